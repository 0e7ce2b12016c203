package tlsca_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/tlsca"
)

// TestIssueAndTrust: a certificate the CA issues is trusted by a client
// that trusts the CA (and by no other), and the CA kept in a directory is
// the same one the next time.
func TestIssueAndTrust(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsca.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tlsca.Ensure(dir)
	if err != nil || string(again.PEM()) != string(ca.PEM()) {
		t.Fatalf("the second Ensure gave another CA (%v)", err)
	}
	cert, err := again.Issue([]string{"127.0.0.1", "streamer.local"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		name string
		pool *x509.CertPool
		ok   bool
	}{{"trusting the CA", ca.Pool(), true}, {"trusting another CA", other(t).Pool(), false}} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}}
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: %v; want ok %v", c.name, err, c.ok)
		}
	}
}

func other(t *testing.T) *tlsca.CA {
	t.Helper()
	ca, err := tlsca.New("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
