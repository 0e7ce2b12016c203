package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/services/gateway"
)

// corruptChunk flips one byte in the middle of the largest chunk of the
// harness's directory vault and returns its path.
func corruptChunk(t *testing.T, h *harness) string {
	t.Helper()
	var path string
	var size int64
	filepath.WalkDir(filepath.Join(h.data, "vault", "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil && info.Size() > size {
				path, size = p, info.Size()
			}
		}
		return nil
	})
	if path == "" {
		t.Fatal("no chunk in the vault")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVaultCheck: a fast check finds every chunk present; a full check
// reads them, finds the corrupted one, and names the recovery point and
// database it breaks.
func TestVaultCheck(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Checked"
	h.protected(db)
	full := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)[0]
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(h.key), 0o600)
	check := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"vault", "check", "--data", h.data, "--master-key-file", keyFile}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := check("--full"); err != nil || !strings.Contains(out, "no damage found") || !strings.Contains(out, "1 recovery points") {
		t.Fatalf("a healthy vault, full check: %v\n%s", err, out)
	}
	corruptChunk(t, h)
	if out, err := check(); err != nil || !strings.Contains(out, "no damage found") {
		t.Errorf("fast check of a chunk corrupted in place (size unchanged): %v\n%s", err, out)
	}
	out, err := check("--full")
	if err == nil || !strings.Contains(out, "corrupt") || !strings.Contains(out, full.ID+"  sql1/"+db+", full taken") {
		t.Errorf("full check of a corrupted chunk: %v\n%s\nwant the damage, naming %s of sql1/%s", err, out, full.ID, db)
	}
}

// TestVerifyOnDemand: a test restore restores the latest moment and a
// random one to scratch databases, checks them, drops them and records
// the result on the recovery points; with a corrupted chunk it fails
// visibly, naming the recovery point, and records the failure.
func TestVerifyOnDemand(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Proven"
	h.protected(db)
	for range 2 {
		h.sim.Commit(db, 3)
		h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	}
	job := cofferJSON[gateway.Job](h, "verify", "sql1/"+db, "--wait")
	if job.State != "succeeded" || job.Kind != "verify" {
		t.Fatalf("verify job: %+v", job)
	}
	rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	latest := rps[len(rps)-1]
	if v := latest.Verified; v == nil || !v.Passed || v.Job != job.ID || !strings.Contains(v.Detail, "DBCC CHECKDB found no errors") {
		t.Errorf("the latest point's verification: %+v", latest.Verified)
	}
	for _, d := range cofferJSON[[]gateway.Database](h, "db", "list", "sql1") {
		if strings.HasPrefix(d.Name, "coffer_verify_") {
			t.Errorf("scratch database %q left behind", d.Name)
		}
	}
	if names := h.sim.Databases(); slicesContainsPrefix(names, "coffer_verify_") {
		t.Errorf("scratch databases left on the server: %v", names)
	}

	corruptChunk(t, h)
	out, err := h.coffer("verify", "sql1/"+db, "--wait")
	if err == nil || !strings.Contains(err.Error(), "recovery point "+latest.ID) || !strings.Contains(err.Error(), "failed its test restore") {
		t.Fatalf("verify with a corrupted chunk: %v\n%s\nwant a failure naming %s", err, out, latest.ID)
	}
	rps = cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	if v := rps[len(rps)-1].Verified; v == nil || v.Passed || v.Job == job.ID {
		t.Errorf("after the failed test restore the latest point's verification is %+v, want the failure", v)
	}
	if !strings.Contains(h.mustCoffer("rp", "list", "sql1/"+db), "TEST RESTORE FAILED") {
		t.Error("rp list does not show the failed test restore")
	}
	if names := h.sim.Databases(); slicesContainsPrefix(names, "coffer_verify_") {
		t.Errorf("scratch databases left on the server after a failure: %v", names)
	}
}

func slicesContainsPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
