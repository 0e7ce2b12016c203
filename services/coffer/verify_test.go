package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// corruptChunk flips one byte in the middle of the largest pack of the
// harness's directory vault (corruptChunkPath), inside one of its
// chunks, and returns its path.
func corruptChunk(t *testing.T, h *harness) string {
	t.Helper()
	path := corruptChunkPath(t, h)
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

// corruptChunkPath is the pack corruptChunk changes: the largest of the
// harness's directory vault.
func corruptChunkPath(t *testing.T, h *harness) string {
	t.Helper()
	var path string
	var size int64
	filepath.WalkDir(filepath.Join(h.data, "vault", "packs"), func(p string, d fs.DirEntry, err error) error {
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
	if got := exitCode(err); got != exitFailed {
		t.Errorf("a vault check that found damage: exit code %d; want %d", got, exitFailed)
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
	// the job's failure and the verification records follow the outcome
	// separately: wait for the record
	h.eventually("the failed verification on the latest point", func() bool {
		rps = cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		v := rps[len(rps)-1].Verified
		return v != nil && v.Job != job.ID
	})
	if v := rps[len(rps)-1].Verified; v.Passed {
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

// TestScheduledVerification: a policy's verify schedule runs a test
// restore at its time, recorded on the recovery points; after a chunk is
// corrupted, the next one fails visibly, naming the recovery point.
func TestScheduledVerification(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Audited"
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sim.Commit(db, 4)
	h.register(db)
	h.setPolicy("audited", `{"full":{"frequency":"daily","hour":0},"log":{"every":"15m"},
		"retention":{"full":"7d","log":"7d"},"verify":{"hour":6}}`)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "audited")
	h.waitIdle(db)
	now := start
	tick := func(until time.Time) {
		for now.Before(until) {
			now = now.Add(15 * time.Minute)
			h.tickAt(clk, db, now, 5*time.Minute)
		}
	}
	verifyJobs := func() []gateway.Job {
		var out []gateway.Job
		for _, j := range h.jobs() {
			if j.Kind == "verify" {
				out = append(out, j)
			}
		}
		return out
	}
	tick(start.Add(5*time.Hour + 45*time.Minute))
	if n := len(verifyJobs()); n != 0 {
		t.Fatalf("%d test restores before 06:00", n)
	}
	tick(start.Add(6 * time.Hour))
	// the schedule and the job record follow the outcome on their own
	// consumers: wait for the record
	var jobs []gateway.Job
	h.eventually("the test restore's outcome", func() bool {
		jobs = verifyJobs()
		return len(jobs) == 1 && (jobs[0].State == "succeeded" || jobs[0].State == "failed")
	})
	if jobs[0].State != "succeeded" {
		t.Fatalf("at 06:00: test restore %+v, want it succeeded", jobs[0])
	}
	var verified []gateway.RecoveryPoint
	h.eventually("the verification on the recovery points", func() bool {
		verified = verified[:0]
		for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db) {
			if rp.Verified != nil {
				verified = append(verified, rp)
			}
		}
		return len(verified) > 0
	})
	for _, rp := range verified {
		if v := rp.Verified; !v.Passed || v.Job != jobs[0].ID {
			t.Errorf("recovery point %s: verification %+v", rp.ID, v)
		}
	}

	corruptChunk(t, h)
	tick(start.Add(30 * time.Hour))
	var failed *gateway.Job
	h.eventually("the second test restore's outcome", func() bool {
		jobs = verifyJobs()
		for k := range jobs {
			if jobs[k].State == "failed" {
				failed = &jobs[k]
			}
		}
		return len(jobs) == 2 && failed != nil
	})
	if failed == nil || !strings.Contains(failed.Error, "failed its test restore") || !strings.Contains(failed.Error, "recovery point rp-") {
		t.Fatalf("the test restore after a chunk was corrupted: %+v, want a failure naming the recovery point", jobs)
	}
	h.eventually("rp list to show the failed test restore", func() bool {
		return strings.Contains(h.mustCoffer("rp", "list", "sql1/"+db), "TEST RESTORE FAILED")
	})
}
