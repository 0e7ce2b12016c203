package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cofferhq/coffer/pkg/topology"
)

// TestNATSConfig runs `coffer nats config` twice: the second run keeps the
// seeds and prints the same configuration, which nats-server loads, with
// TLS from coffer's CA.
func TestNATSConfig(t *testing.T) {
	dir, caDir := t.TempDir(), t.TempDir()
	args := []string{"nats", "config", "--dir", dir, "--tls-hosts", "localhost,127.0.0.1", "--ca-dir", caDir}
	var first, second bytes.Buffer
	if err := run(t.Context(), args, &first, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), args, &second, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() {
		t.Error("a second run printed another configuration")
	}
	for _, f := range []string{"discovery.nk", "gateway.nk", "alerter.nk", "vault-check.nk", "nats-server.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, first.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v", err)
	}
	// one user per entry of the access table: every service, and the
	// vault check's
	if opts.TLSConfig == nil || len(opts.Nkeys) != len(topology.Services) {
		t.Errorf("got TLS %v and %d nkey users; want TLS and %d", opts.TLSConfig != nil, len(opts.Nkeys), len(topology.Services))
	}
}

func TestS3Policy(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"s3", "policy", "--bucket", "vault", "--prefix", "site1"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var p iamPolicy
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Statement {
		for _, r := range st.Resource {
			if r != "arn:aws:s3:::vault" && r != "arn:aws:s3:::vault/site1/*" {
				t.Errorf("statement %s covers %s; want the vault's bucket and prefix alone", st.Sid, r)
			}
		}
		for _, a := range st.Action {
			if strings.Contains(a, "*") || strings.Contains(a, "Bucket") && a != "s3:ListBucket" && a != "s3:ListBucketMultipartUploads" && a != "s3:GetBucketLocation" {
				t.Errorf("statement %s allows %s", st.Sid, a)
			}
		}
	}
}
