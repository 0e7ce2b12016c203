package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/tlsca"
)

// TestCAInit: `coffer ca init` creates the CA once, keeps it after, and
// copies its certificate where SQL Server reads trusted CAs; the CA it
// leaves is the one a streamer given the same directory loads.
func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	trust := filepath.Join(t.TempDir(), "ca-certificates", "coffer-ca.crt")
	var first []byte
	for i, want := range []string{"(created)", "(kept)"} {
		var out bytes.Buffer
		if err := runCA([]string{"init", "--dir", dir, "--copy-to", trust}, noEnv, &out, io.Discard); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		certPath := filepath.Join(dir, tlsca.CertFile)
		if got := out.String(); !strings.Contains(got, certPath+" "+want) || !strings.Contains(got, trust) {
			t.Errorf("run %d printed %q; want %s %s and the copy %s", i+1, got, certPath, want, trust)
		}
		ca, err := tlsca.Load(dir)
		if err != nil {
			t.Fatalf("run %d: the streamer cannot load the CA: %v", i+1, err)
		}
		copied, err := os.ReadFile(trust)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(copied, ca.PEM()) {
			t.Errorf("run %d: %s is not the CA certificate", i+1, trust)
		}
		if first == nil {
			first = copied
		} else if !bytes.Equal(copied, first) {
			t.Errorf("run %d made another CA; want the first one kept", i+1)
		}
	}
	block, _ := pem.Decode(first)
	if block == nil {
		t.Fatal("the copied certificate is not PEM")
	}
	if cert, err := x509.ParseCertificate(block.Bytes); err != nil || !cert.IsCA {
		t.Errorf("the copied certificate: %v, IsCA %v; want a CA certificate", err, err == nil && cert.IsCA)
	}
	if info, err := os.Stat(trust); err != nil || info.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("%s: %v; want it readable by SQL Server's user", trust, err)
	}
}

func TestCAInitArgs(t *testing.T) {
	home := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		wantDir string
	}{
		{"no subcommand", nil, nil, "usage: coffer ca init", ""},
		{"unknown subcommand", []string{"show"}, nil, "usage: coffer ca init", ""},
		{"stray argument", []string{"init", "--dir", filepath.Join(home, "x"), "extra"}, nil, `unexpected argument "extra"`, ""},
		{"COFFER_CA_DIR", []string{"init"}, map[string]string{"COFFER_CA_DIR": filepath.Join(home, "env")}, "", filepath.Join(home, "env")},
		{"DATA/ca", []string{"init"}, map[string]string{"COFFER_DATA": filepath.Join(home, "data")}, "", filepath.Join(home, "data", "ca")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runCA(tt.args, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if _, err := tlsca.Load(tt.wantDir); err != nil {
				t.Errorf("no CA in %s: %v", tt.wantDir, err)
			}
		})
	}
}

func noEnv(string) string { return "" }
