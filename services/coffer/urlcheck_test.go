package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestInstanceAddChecksURLMode: `coffer instance add` registers the
// instance, waits until discovery has recorded it, and checks that its
// backups can run: SQL Server 2022 that trusts coffer's CA backs up to the
// streamer, which says so; without the streamer's S3 endpoint the
// instance keeps disk mode, nothing to check; SQL Server that does not
// trust the CA gets the problem and the fix, naming the CA certificate,
// and a failed exit, but stays registered, and `coffer instance check`
// says the same, in JSON too; registered again in disk mode, it passes.
func TestInstanceAddChecksURLMode(t *testing.T) {
	cases := []struct {
		name string
		opt  harnessOptions
		ok   bool
		want []string // in the output; {data} is the harness's data directory
	}{
		{"URL mode", harnessOptions{url: true, trustCA: true}, true,
			[]string{"instance sql1 registered", "URL mode: SQL Server reaches and trusts the streamer at 127.0.0.1:"}},
		{"disk mode", harnessOptions{}, true,
			[]string{"instance sql1 registered", "disk mode: this streamer serves no S3 endpoint"}},
		{"untrusted CA", harnessOptions{url: true}, false,
			[]string{"instance sql1 registered", "URL mode: the check of sql1 found a problem", "problem: SQL Server does not trust the certificate of the streamer at 127.0.0.1:", "12175",
				"fix:", "{data}", "/var/opt/mssql/security/ca-certificates/coffer-ca.crt", "Import-Certificate"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // most of a harness's time is its shutdown
			h := startHarness(t, c.opt)
			out, err := h.coffer("instance", "add", "sql1", "--dsn", h.dsn)
			if (err == nil) != c.ok {
				t.Fatalf("coffer instance add: error %v; want ok %v\n%s", err, c.ok, out)
			}
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "{data}", filepath.Join(h.data, "ca", tlsca.CertFile))
				if !strings.Contains(out, w) {
					t.Errorf("coffer instance add says:\n%s\nwant it to say %q", out, w)
				}
			}
			if list := cofferJSON[[]gateway.Instance](h, "instance", "list"); len(list) != 1 || list[0].Name != "sql1" {
				t.Errorf("after add: instances %+v; want sql1 registered", list)
			}
			again, err := h.coffer("instance", "check", "sql1")
			if (err == nil) != c.ok || !strings.Contains(again, strings.SplitN(out, "\n", 3)[1]) {
				t.Errorf("coffer instance check: %v\n%s\nwant what add said:\n%s", err, again, out)
			}
			raw, err := h.coffer("instance", "check", "sql1", "--json")
			var res gateway.URLCheck
			if jerr := json.Unmarshal([]byte(raw), &res); jerr != nil || res.OK != c.ok || (err == nil) != c.ok {
				t.Errorf("coffer instance check --json: %v, %v\n%s\nwant ok %v", err, jerr, raw, c.ok)
			}
			if c.ok {
				return
			}
			// the way out the fix offers on SQL Server 2019 works here
			// too: registered again in disk mode, its check is that
			// registration's, not the last one's
			out, err = h.coffer("instance", "add", "sql1", "--dsn", h.dsn, "--mode", "disk")
			if err != nil || !strings.Contains(out, "disk mode: the instance is set to disk mode") {
				t.Errorf("coffer instance add --mode disk: %v\n%s\nwant the check of disk mode", err, out)
			}
		})
	}
}

// TestWaitRegistered: after a registration of an instance already
// registered, `coffer instance add` waits for the record of its own
// registration, not the one listed before it.
func TestWaitRegistered(t *testing.T) {
	var gets atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg := "add-1" // the registration before
		if gets.Add(1) > 3 {
			reg = "add-2"
		}
		json.NewEncoder(w).Encode([]gateway.Instance{{Name: "other", Registration: "add-2"}, {Name: "sql1", Registration: reg}})
	}))
	t.Cleanup(api.Close)
	c := &cli{api: newAPIClient(api.URL, ""), stdout: io.Discard}
	ok, err := c.waitRegistered(t.Context(), "sql1", "add-2")
	if err != nil || !ok {
		t.Fatalf("waitRegistered: %v, %v; want true", ok, err)
	}
	if n := gets.Load(); n != 4 {
		t.Errorf("waited %d polls; want 4, until the listing showed registration add-2", n)
	}
}
