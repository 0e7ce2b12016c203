package tlsbatch_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/tlsbatch"
	"github.com/cofferhq/coffer/pkg/tlsca"
)

// configs returns a server and a client config for 127.0.0.1.
func configs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := tlsca.New("tlsbatch test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: ca.Pool()}
}

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// pair returns the two ends of a loopback TCP connection, the client's
// writes counted.
func pair(t *testing.T) (server net.Conn, client *countingConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s, &countingConn{Conn: c}
}

// stream makes the bytes the tests send: each call's differ.
var stream = rand.NewChaCha8([32]byte{'t', 'l', 's'})

func random(n int) []byte {
	b := make([]byte, n)
	stream.Read(b)
	return b
}

// TestRoundTrip sends writes of many sizes each way and reads back the
// same bytes, the handshake made by the client's first Write; a Write's
// records go out in a write to the connection per 256 KiB, where
// crypto/tls makes one per 16 KiB; Close ends the peer's reading cleanly.
func TestRoundTrip(t *testing.T) {
	scfg, ccfg := configs(t)
	rawS, rawC := pair(t)
	ccfg.ServerName = "127.0.0.1"
	srv, cli := tlsbatch.Server(rawS, scfg), tlsbatch.Client(rawC, ccfg)

	sizes := []int{1, 0, 16<<10 - 1, 16 << 10, 16<<10 + 1, 100_000, 1 << 20, 5<<20 + 3}
	var want []byte
	for _, n := range sizes {
		want = append(want, random(n)...)
	}
	got := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(srv)
		if err != nil {
			t.Errorf("server read: %v", err)
		}
		got <- b
	}()
	off := 0
	for _, n := range sizes {
		before := rawC.writes.Load()
		if _, err := cli.Write(want[off : off+n]); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		off += n
		if off == n {
			continue // the first Write also made the handshake
		}
		writes := rawC.writes.Load() - before
		if limit := int64(n/(256<<10) + 1); n > 0 && writes > limit {
			t.Errorf("a Write of %d bytes made %d writes to the connection; want at most %d", n, writes, limit)
		}
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("server read %d bytes, not the %d written (or not the same)", len(b), len(want))
	}

	// the other way, through ReadFrom
	rawS2, rawC2 := pair(t)
	srv2, cli2 := tlsbatch.Server(rawS2, scfg), tlsbatch.Client(rawC2, ccfg)
	body := random(3<<20 + 17)
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(srv2, onlyReader{bytes.NewReader(body)})
		if err == nil {
			err = srv2.Close()
		}
		done <- err
	}()
	b, err := io.ReadAll(cli2)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, body) {
		t.Fatalf("client read %d bytes, not the %d written (or not the same)", len(b), len(body))
	}
}

// onlyReader hides a reader's WriteTo, so that io.Copy uses the
// destination's ReadFrom.
type onlyReader struct{ io.Reader }

// TestReadFromBatches checks that io.Copy into a Conn writes 256 KiB to
// the connection at a time.
func TestReadFromBatches(t *testing.T) {
	scfg, ccfg := configs(t)
	rawS, rawC := pair(t)
	ccfg.ServerName = "127.0.0.1"
	srv, cli := tlsbatch.Server(rawS, scfg), tlsbatch.Client(rawC, ccfg)
	go io.Copy(io.Discard, srv)
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	const n = 4 << 20
	before := rawC.writes.Load()
	if _, err := io.Copy(cli, onlyReader{bytes.NewReader(random(n))}); err != nil {
		t.Fatal(err)
	}
	// crypto/tls alone: 256 writes
	if writes := rawC.writes.Load() - before; writes > n/(256<<10)+1 {
		t.Errorf("copying %d bytes made %d writes to the connection; want at most %d", n, writes, n/(256<<10)+1)
	}
}

// TestHTTP serves HTTPS through NewListener and calls it through a
// Transport that UseWith set up: a PUT's body and a GET's body of a few
// megabytes arrive whole.
func TestHTTP(t *testing.T) {
	scfg, ccfg := configs(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var stored atomic.Pointer[[]byte]
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			stored.Store(&b)
		case http.MethodGet:
			b := *stored.Load()
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			io.Copy(w, onlyReader{bytes.NewReader(b)})
		}
	})}
	go hs.Serve(tlsbatch.NewListener(l, scfg))
	t.Cleanup(func() { hs.Close() })

	tr := &http.Transport{TLSClientConfig: ccfg}
	tlsbatch.UseWith(tr)
	c := &http.Client{Transport: tr}
	url := "https://" + l.Addr().String() + "/object"
	body := random(6<<20 + 5)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, url, onlyReader{bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: %s", resp.Status)
	}
	resp, err = c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("GET returned %d bytes, not the %d PUT (or not the same)", len(got), len(body))
	}

	// a server whose certificate the client does not trust fails the dial
	other, _ := configs(t)
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs2 := &http.Server{Handler: http.NotFoundHandler()}
	go hs2.Serve(tlsbatch.NewListener(l2, other))
	t.Cleanup(func() { hs2.Close() })
	_, err = c.Get("https://" + l2.Addr().String() + "/")
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Fatalf("GET from an untrusted server: %v; want an unknown authority", err)
	}
}

// TestDialerHandshakeTimeout dials a server that accepts the connection
// and never answers: the dial fails once HandshakeTimeout has passed.
func TestDialerHandshakeTimeout(t *testing.T) {
	_, ccfg := configs(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	d := &tlsbatch.Dialer{Config: ccfg, HandshakeTimeout: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial: %v; want the handshake's deadline exceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dial did not return: no handshake timeout")
	}
}
