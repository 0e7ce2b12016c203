package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// apiCall sends a request with no body to the harness's API and returns
// its status and body.
func (h *harness) apiCall(method, path string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.api+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestCancelBackup: a full backup stalled inside SQL Server's BACKUP is
// cancelled through the API. The simulator sees the statement cancelled,
// the job ends cancelled with who cancelled it, its steps and its log
// lines, no recovery point is recorded, a second cancel is refused (409),
// and the next backup of the database succeeds.
func TestCancelBackup(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Longrun"
	h.protected(db)
	before := h.sim.Stats().Cancelled
	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultStall, Database: db, AfterBytes: 16 * mssqlsim.PageSize})
	t.Cleanup(remove)
	h.mustCoffer("backup", "sql1/"+db, "--type", "full")
	h.eventually("the on-demand full stalled in BACKUP", func() bool { return h.sim.Stats().Stalled == 1 })
	var running gateway.Job
	h.eventually("the on-demand full running", func() bool {
		for _, j := range h.jobs() {
			if j.Database == db && j.Kind == "backup" && j.State == "running" {
				running = j
				return true
			}
		}
		return false
	})
	// coffer jobs cancel asks, and follows the job to its end
	if out := h.mustCoffer("jobs", "cancel", running.ID); !strings.Contains(out, "job "+running.ID+" cancelled") {
		t.Errorf("coffer jobs cancel %s:\n%s\nwant it to say the job is cancelled", running.ID, out)
	}
	got := cofferJSON[gateway.Job](h, "jobs", "show", running.ID)
	if got.State != "cancelled" || got.CancelledBy == "" || !strings.Contains(got.Error, "cancelled by") {
		t.Errorf("job %s: %s by %q (%s); want cancelled, and by whom", got.ID, got.State, got.CancelledBy, got.Error)
	}
	if st := h.sim.Stats(); st.Cancelled <= before || st.Stalled != 0 {
		t.Errorf("the simulator saw %d BACKUP statements cancelled, before %d, and %d still stalled; want one more, and none", st.Cancelled, before, st.Stalled)
	}
	if n := len(got.Steps); n == 0 || got.Steps[n-1].Outcome != "cancelled" || got.Steps[n-1].Ended == nil {
		t.Errorf("steps %+v; want the last ended cancelled", got.Steps)
	}
	h.eventually("the job's log lines of its cancel", func() bool {
		got = cofferJSON[gateway.Job](h, "jobs", "show", running.ID)
		for _, l := range got.Log {
			if l.Service == "backup-streamer" && strings.Contains(l.Message, "cancel requested") {
				return true
			}
		}
		return false
	})
	for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db) {
		if rp.JobID == running.ID {
			t.Errorf("the cancelled job recorded recovery point %s", rp.ID)
		}
	}
	// waiting for it fails, as for a failed job; its steps are shown
	if out, err := h.coffer("jobs", "wait", running.ID); exitCode(err) != exitFailed || !strings.Contains(err.Error(), "cancelled by") {
		t.Errorf("coffer jobs wait on the cancelled job: %v (exit %d)\n%s\nwant exit %d, saying who cancelled it", err, exitCode(err), out, exitFailed)
	}
	if out := h.mustCoffer("jobs", "show", running.ID); !strings.Contains(out, "STEP") || !strings.Contains(out, "cancelled by:") {
		t.Errorf("coffer jobs show of the cancelled job:\n%s\nwant its steps and who cancelled it", out)
	}
	if out, err := h.coffer("jobs", "cancel", running.ID); exitCode(err) != exitFailed {
		t.Errorf("coffer jobs cancel of the cancelled job: %v (exit %d)\n%s\nwant it refused, exit %d", err, exitCode(err), out, exitFailed)
	}
	status, body := h.apiCall("POST", "/api/v1/jobs/"+running.ID+"/cancel")
	var e gateway.Error
	if status != http.StatusConflict || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code == "" {
		t.Errorf("cancel of the cancelled job: %d %s; want 409 in the error shape", status, body)
	}
	remove() // had the fault not fired, the next backup would stall
	next := cofferJSON[gateway.Job](h, "backup", "sql1/"+db, "--type", "full", "--wait")
	if next.State != "succeeded" || next.RecoveryPoint == "" {
		t.Errorf("the next backup: %s (%s), recovery point %q; want it committed", next.State, next.Error, next.RecoveryPoint)
	}
}
