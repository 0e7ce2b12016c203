package s3store_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/blobtest"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
)

// authProxy is an HTTP proxy on loopback that tunnels CONNECT requests
// carrying its Basic credentials, answers 407 to the others, and counts
// the tunnels it opened.
type authProxy struct {
	URL     *url.URL // without credentials
	tunnels atomic.Int64
	refused atomic.Int64

	mu    sync.Mutex
	conns []net.Conn // both ends of every tunnel, closed at cleanup
}

func startAuthProxy(t *testing.T, user, password string) *authProxy {
	t.Helper()
	p := &authProxy{}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "this proxy only tunnels", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Proxy-Authorization") != want {
			p.refused.Add(1)
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		p.tunnels.Add(1)
		p.mu.Lock()
		p.conns = append(p.conns, conn, up)
		p.mu.Unlock()
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(up, rw) // what the client sent, buffered or not
			up.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(conn, up)
		conn.Close()
		up.Close()
	}))
	t.Cleanup(func() {
		// the client keeps idle tunnels open: close them rather than
		// wait for the store to
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		srv.Close()
		wg.Wait()
	})
	p.URL, _ = url.Parse(srv.URL)
	return p
}

// TestProxy runs the conformance suite with every request tunnelled
// through a proxy that asks for credentials.
func TestProxy(t *testing.T) {
	srv := miniotest.Start(t)
	proxy := startAuthProxy(t, "coffer", "pr0xy-s3cret")
	var n atomic.Int64
	blobtest.Run(t, func(t *testing.T) blob.Store {
		bucket := fmt.Sprintf("proxied-%d", n.Add(1))
		srv.MakeBucket(t, bucket)
		u := *proxy.URL
		u.User = url.UserPassword("coffer", "pr0xy-s3cret")
		s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey,
			SecretKey: srv.SecretKey, RootCAs: srv.CertPool(), Proxy: &u})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	if proxy.tunnels.Load() == 0 || proxy.refused.Load() != 0 {
		t.Fatalf("the proxy opened %d tunnels and refused %d; want some, and none", proxy.tunnels.Load(), proxy.refused.Load())
	}
	t.Logf("%d tunnels through the proxy", proxy.tunnels.Load())
}

// TestProxyRefuses checks that a proxy's refusal, or its absence, fails
// the call with an error that says so, never naming the password.
func TestProxyRefuses(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "proxied")
	proxy := startAuthProxy(t, "coffer", "right-password")
	// nothing listens at deadURL once ln is closed
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	ln.Close()

	wrong := *proxy.URL
	wrong.User = url.UserPassword("coffer", "wr0ng-passw0rd")
	for _, tc := range []struct {
		name  string
		proxy *url.URL
		want  string
	}{
		{"wrong password", &wrong, "Proxy Authentication Required"},
		{"no credentials", proxy.URL, "Proxy Authentication Required"},
		{"no proxy listening", deadURL, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "proxied", AccessKey: srv.AccessKey,
				SecretKey: srv.SecretKey, RootCAs: srv.CertPool(), Proxy: tc.proxy})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(t.Context(), "k", strings.NewReader("data"), 4)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Put through %s: %v; want an error saying %q", tc.proxy.Redacted(), err, tc.want)
			}
			if strings.Contains(err.Error(), "wr0ng-passw0rd") {
				t.Fatalf("the error names the proxy's password: %v", err)
			}
		})
	}
	if proxy.tunnels.Load() != 0 {
		t.Fatalf("the proxy tunnelled %d connections without the right credentials", proxy.tunnels.Load())
	}
}

func TestProxyConfig(t *testing.T) {
	for _, raw := range []string{"ftp://proxy:21", "http://proxy:3128/path", "http://proxy:3128?x=1", "http:///"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s3store.New(s3store.Config{Endpoint: "s3:9000", Bucket: "b", AccessKey: "a", SecretKey: "s", Proxy: u})
		if err == nil || !strings.Contains(err.Error(), "proxy") {
			t.Errorf("proxy %s: %v; want it refused", raw, err)
		}
	}
}
