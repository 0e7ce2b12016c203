package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestSecondCopy protects a database into a directory vault under a
// policy that copies every recovery point to a MinIO vault, builds a half
// hour of fulls and logs on the fake clock, and waits until each point is
// copied. The copy vault checks clean and restores exactly when chosen;
// then the first vault's whole directory is deleted, and a restore to a
// second noted before (a transaction a second either side of it) reads
// every point from the copy and equals the source as of that second,
// while a restore that insists on the first vault fails.
func TestSecondCopy(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Ledger"
	// waitFor is h.eventually, saying on timeout what was left
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				out, _ := h.coffer("rp", "list", "sql1/"+db)
				t.Logf("at %v, coffer rp list:\n%s", clk.Now(), out)
				for _, j := range h.jobs() {
					t.Logf("job %s %s %s: %s %s", j.ID, j.Kind, j.State, j.Detail, j.Error)
				}
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	s3 := miniotest.Start(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(s3.SecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	h.mustCoffer("vault", "create", "offsite", "--s3-bucket", "offsite", "--s3-endpoint", s3.Endpoint,
		"--s3-access-key", s3.AccessKey, "--s3-ca-file", s3.CAFile, "--s3-secret-key-file", secretFile)
	firstDir := filepath.Join(t.TempDir(), "first")
	h.mustCoffer("vault", "create", "first", "--dir", firstDir)

	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.Commit(db, 4); err != nil {
		t.Fatal(err)
	}
	h.register(db)
	// a copy rule naming no vault that exists is refused
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"full":{"frequency":"daily","hour":0},"log":{"every":"5m"},"retention":{"full":"7d","log":"7d"},
		"copy":{"vault":"nosuch","retention":"30d"}}`), 0o600)
	if out, err := h.coffer("policy", "set", "bad", "--file", bad); err == nil || !strings.Contains(out+err.Error(), "no vault nosuch") {
		t.Errorf("policy with a copy to an unknown vault: %v\n%s", err, out)
	}
	h.setPolicy("copied", `{"full":{"frequency":"daily","hour":0},"log":{"every":"5m"},
		"retention":{"full":"7d","log":"7d"},"copy":{"vault":"offsite","retention":"30d"}}`)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "copied", "--vault", "first")
	h.waitIdle(db)
	at := start.Add(11 * time.Minute)
	h.halfHourAround(clk, db, start, at)
	want, err := h.sim.ContentHash(db, at)
	if err != nil {
		t.Fatal(err)
	}
	var rps []gateway.RecoveryPoint
	h.eventually("every point copied", func() bool {
		rps = cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		for _, j := range h.jobs() {
			if j.Kind == "copy" && j.State == "failed" {
				t.Fatalf("copy job %s failed: %s", j.ID, j.Error)
			}
		}
		for _, rp := range rps {
			if !slices.Equal(rp.Copies, []string{"offsite"}) {
				return false
			}
		}
		return len(rps) == 7
	})
	for _, rp := range rps {
		if rp.Vault != "first" {
			t.Errorf("recovery point %s is in vault %q; want first", rp.ID, rp.Vault)
		}
	}
	if table := h.mustCoffer("rp", "list", "sql1/"+db); strings.Count(table, "in vault first; copied to offsite") != 7 {
		t.Errorf("rp list does not say where each point and its copy are:\n%s", table)
	}

	env := func(k string) string { return map[string]string{"COFFER_MASTER_KEY": h.key}[k] }
	var out bytes.Buffer
	err = runVault(t.Context(), []string{"check", "--full", "--vault", "offsite", "--data", h.data}, env, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "full check: 7 recovery points") || !strings.Contains(out.String(), "no damage found") {
		t.Errorf("coffer vault check --full --vault offsite: %v\n%s\nwant the 7 copies checked, no damage", err, out.String())
	}
	// with no --vault, every vault: the default, first and offsite
	out.Reset()
	err = runVault(t.Context(), []string{"check", "--data", h.data}, env, &out, io.Discard)
	if err != nil || strings.Count(out.String(), "no damage found") != 3 || !strings.Contains(out.String(), "vault first (") ||
		!strings.Contains(out.String(), "vault offsite (") || !strings.Contains(out.String(), "3 vaults checked, 0 failed") {
		t.Errorf("coffer vault check: %v\n%s\nwant the default vault, first and offsite checked, no damage", err, out.String())
	}
	restoreExact := func(target string, args ...string) {
		t.Helper()
		args = append([]string{"restore", "sql1/" + db, "--time", at.Format(time.RFC3339), "--as", target, "--wait"}, args...)
		h.mustCoffer(args...)
		if got, err := h.sim.ContentHash(target, time.Time{}); err != nil || got != want {
			t.Errorf("restored %s to %v: content hash %s (%v); want the source's as of then, %s", target, at, got, err, want)
		}
	}
	restoreExact("from the copy", "--from-vault", "offsite")

	// the first vault lost entirely
	if err := os.RemoveAll(firstDir); err != nil {
		t.Fatal(err)
	}
	// the check of every vault fails, naming the lost one, and still
	// checks the others
	out.Reset()
	err = runVault(t.Context(), []string{"check", "--data", h.data}, env, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "vault first") || strings.Count(out.String(), "no damage found") != 2 ||
		!strings.Contains(out.String(), "3 vaults checked, 1 failed") {
		t.Errorf("coffer vault check with vault first lost: %v\n%s\nwant first failed, the default vault and offsite checked clean", err, out.String())
	}
	t.Logf("coffer vault check with vault first lost: %v\n%s", err, out.String())
	if out, err := h.coffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", "from the lost vault", "--from-vault", "first", "--wait"); err == nil {
		t.Errorf("a restore from the deleted vault succeeded:\n%s", out)
	}
	restoreExact("after the loss")

	// past the first vault's retention (7 days) and within the copy's
	// (30): the points live on in the copy, which they now name; past the
	// copy's, they are gone
	h.mustCoffer("unprotect", "sql1/"+db) // no more backups into the lost vault
	// the scheduler has stopped protecting it before the clock jumps:
	// else its next full, due on the way, runs into the lost vault
	waitFor("the protection stopped", func() bool {
		for _, d := range cofferJSON[[]gateway.Database](h, "db", "list") {
			if d.Name == db {
				return !d.Protected
			}
		}
		return false
	})
	retain := func(now time.Time) {
		t.Helper()
		clk.Set(now)
		if err := h.run.scheduler.Tick(t.Context(), now); err != nil {
			t.Fatal(err)
		}
	}
	retain(start.Add(8 * 24 * time.Hour))
	waitFor("the points kept in their copy", func() bool {
		rps = cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		for _, rp := range rps {
			if rp.Vault != "offsite" || len(rp.Copies) != 0 || rp.ExpiresAt == nil || !rp.ExpiresAt.After(start.Add(29*24*time.Hour)) {
				return false
			}
		}
		return len(rps) == 7
	})
	restoreExact("from the copy alone")
	retain(start.Add(31 * 24 * time.Hour))
	waitFor("the copies expired", func() bool {
		return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 0
	})
}
