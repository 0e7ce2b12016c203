package autoprotect_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/autoprotect"
)

// TestRetryThenJobFailed stands in for a scheduler that fails every
// protection: autoprotect asks four times, with growing waits, and then
// reports one failed job.
func TestRetryThenJobFailed(t *testing.T) {
	const initial = 250 * time.Millisecond
	e := newEnv(t, &autoprotect.Config{InitialInterval: initial})
	e.scheduler(func(ctx context.Context, req *cofferv1.ProtectionRequested) error {
		return e.fail(ctx, req, "policy 'gold' does not exist")
	})
	e.setAutoprotect("SQL01", true, "gold")
	e.discover("SQL01", database("Sales ]x", 7))

	eventually(t, 30*time.Second, func() bool { return len(e.jobFailures()) > 0 },
		func() string { return "no JobFailed; requests so far: " + strings.Join(e.requested(), ", ") })
	// A fifth request would come 8 × initial after the fourth failure.
	steady(t, 10*initial, func() bool { return len(e.requests()) == 4 && len(e.jobFailures()) == 1 },
		func() string {
			return "more than 4 requests and 1 failed job: " + strings.Join(e.requested(), ", ")
		})

	reqs := e.requests()
	var prevGap time.Duration
	for i, r := range reqs {
		if r.GetAttempt() != int32(i+1) || r.GetRequestedBy() != "autoprotect" || r.GetPolicy() != "gold" ||
			r.GetDatabase().GetInstance() != "SQL01" || r.GetDatabase().GetDatabase() != "Sales ]x" {
			t.Errorf("request %d: %v; want attempt %d of SQL01/Sales ]x by autoprotect with gold", i, r, i+1)
		}
		if i == 0 {
			continue
		}
		gap := r.GetMeta().GetTime().AsTime().Sub(reqs[i-1].GetMeta().GetTime().AsTime())
		if want := initial << (i - 1); gap < want {
			t.Errorf("gap before attempt %d: %v; want at least %v", i+1, gap, want)
		}
		if gap <= prevGap {
			t.Errorf("gap before attempt %d: %v; want more than the gap before it, %v", i+1, gap, prevGap)
		}
		t.Logf("gap before attempt %d: %v", i+1, gap)
		prevGap = gap
	}
	ids := map[string]bool{}
	for _, r := range reqs {
		ids[r.GetMeta().GetEventId()] = true
	}
	if len(ids) != 4 {
		t.Errorf("request ids %v; want 4 distinct", ids)
	}

	jf := e.jobFailures()[0]
	want := "auto-protection of [Sales ]]x] on SQL01 failed after 4 attempts: policy 'gold' does not exist"
	if jf.GetReason() != want || jf.GetKind() != cofferv1.JobKind_JOB_KIND_PROTECT || jf.GetService() != "autoprotect" ||
		jf.GetDatabase().GetInstance() != "SQL01" || jf.GetDatabase().GetDatabase() != "Sales ]x" {
		t.Errorf("JobFailed %v; want PROTECT of SQL01/Sales ]x from autoprotect, reason %q", jf, want)
	}
	if jf.GetMeta().GetJobId() == "" {
		t.Error("JobFailed without a job id")
	}
}

// TestProtectsNewDatabases: a discovered database is protected only when
// its instance is autoprotected, it is not a system database, a snapshot
// or a test restore's scratch database, and it is not protected already.
func TestProtectsNewDatabases(t *testing.T) {
	e := newEnv(t, &autoprotect.Config{})
	e.setAutoprotect("SQL01", true, "gold")
	e.setAutoprotect("SQL03", false, "gold")
	e.markProtected("SQL01", "Already", cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED)

	snap := database("Sales_snap", 9)
	snap.Snapshot = true
	offline := database("Offline ]DB'", 8)
	offline.State, offline.RecoveryModel = "OFFLINE", "SIMPLE"
	for _, d := range []*cofferv1.DatabaseInfo{
		database("Sales", 5), database("master", 1), database("model", 3), database("msdb", 4),
		snap, database("Already", 6), offline, database(event.ScratchDatabase("j20261122T101010-0a0b0c0d", 1), 7),
	} {
		e.discover("SQL01", d)
	}
	e.discover("SQL02", database("Other", 5)) // never set
	e.discover("SQL03", database("Third", 5)) // set off

	// Settings and discoveries are handled in stream order: once the last
	// one's request is out, every one before it was handled.
	e.discover("SQL01", database("Sentinel", 99))
	eventually(t, 20*time.Second, func() bool { return slices.Contains(e.requested(), "SQL01/Sentinel") },
		func() string { return "no request for the sentinel: " + strings.Join(e.requested(), ", ") })
	want := []string{"SQL01/Sales", "SQL01/Offline ]DB'", "SQL01/Sentinel"}
	if got := e.requested(); !slices.Equal(got, want) {
		t.Fatalf("requests for %q; want %q", got, want)
	}
	for _, r := range e.requests() {
		if r.GetAttempt() != 1 || r.GetRequestedBy() != "autoprotect" || r.GetPolicy() != "gold" {
			t.Errorf("request %v; want attempt 1 by autoprotect with gold", r)
		}
	}

	// The same database reported again (a redelivery, or discovery running
	// twice) is asked for once.
	id := event.ID("rediscovered", "Sales")
	e.publish(cofferv1.SubjectDatabaseDiscovered, &cofferv1.DatabaseDiscovered{
		Meta: event.Meta(id, "", time.Now()), Instance: "SQL01", Database: database("Sales", 5)}, id)
	e.discover("SQL01", database("Sentinel 2", 100))
	eventually(t, 20*time.Second, func() bool { return slices.Contains(e.requested(), "SQL01/Sentinel 2") },
		func() string { return "no request for the second sentinel: " + strings.Join(e.requested(), ", ") })
	if got := e.requested(); len(got) != 4 {
		t.Errorf("requests %q; want the second discovery of Sales to add none", got)
	}
}

// TestTurningOnProtectsExisting: turning auto-protection on asks for every
// eligible, unprotected database the inventory holds; turning it off stops.
func TestTurningOnProtectsExisting(t *testing.T) {
	e := newEnv(t, &autoprotect.Config{})
	snap := database("Snap", 8)
	snap.Snapshot = true
	for _, d := range []*cofferv1.DatabaseInfo{
		database("Sales", 5), database("HR Payroll ", 6), database("master", 1), database("msdb", 4), snap,
		database("Already", 9), database("Failed before", 10), database("Stopped", 11),
	} {
		e.putInventory("SQL01", d)
	}
	e.putInventory("SQL02", database("Elsewhere", 5))
	e.markProtected("SQL01", "Already", cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED)
	e.markProtected("SQL01", "Failed before", cofferv1.ProtectionState_PROTECTION_STATE_FAILED)
	e.markProtected("SQL01", "Stopped", cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED)

	e.setAutoprotect("SQL01", true, "silver")
	sentinel := func(name string) {
		t.Helper()
		e.discover("SQL09", database(name, 50))
		eventually(t, 20*time.Second, func() bool { return slices.Contains(e.requested(), "SQL09/"+name) },
			func() string { return "no request for " + name + ": " + strings.Join(e.requested(), ", ") })
	}
	e.setAutoprotect("SQL09", true, "x")
	sentinel("Sentinel")

	got := e.requested()
	want := []string{"SQL01/Failed before", "SQL01/HR Payroll ", "SQL01/Sales", "SQL01/Stopped"}
	if first := slices.Sorted(slices.Values(got[:len(got)-1])); !slices.Equal(first, want) {
		t.Fatalf("requests for %q; want %q, then the sentinel", got, want)
	}
	for _, r := range e.requests()[:4] {
		if r.GetPolicy() != "silver" || r.GetAttempt() != 1 {
			t.Errorf("request %v; want attempt 1 with silver", r)
		}
	}
	var st cofferv1.AutoprotectSetting
	if _, err := e.cat.Bucket(cofferv1.BucketAutoprotect).Get(t.Context(), catalog.Key("SQL01"), &st); err != nil ||
		!st.GetEnabled() || st.GetPolicy() != "silver" {
		t.Errorf("stored setting %v, %v; want enabled with silver", &st, err)
	}

	// On again: nothing new.
	e.setAutoprotect("SQL01", true, "silver")
	sentinel("Sentinel 2")
	if n := len(e.requested()); n != 6 {
		t.Errorf("%d requests after turning auto-protection on twice; want 6: %q", n, e.requested())
	}

	// Off: a new database is left alone.
	e.setAutoprotect("SQL01", false, "silver")
	e.discover("SQL01", database("Late", 12))
	sentinel("Sentinel 3")
	if got := e.requested(); slices.Contains(got, "SQL01/Late") || len(got) != 7 {
		t.Errorf("requests %q; want none for SQL01/Late after turning auto-protection off", got)
	}
}

// TestRetryStops: no retry for a database protected meanwhile, for an
// instance whose auto-protection was turned off meanwhile, or for a
// person's request.
func TestRetryStops(t *testing.T) {
	const initial = 200 * time.Millisecond
	e := newEnv(t, &autoprotect.Config{InitialInterval: initial})
	e.scheduler(func(ctx context.Context, req *cofferv1.ProtectionRequested) error {
		switch req.GetDatabase().GetInstance() {
		case "SQL01": // protected by someone else before the retry
			e.markProtected("SQL01", req.GetDatabase().GetDatabase(), cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED)
		case "SQL02": // auto-protection turned off before the retry
			e.setAutoprotect("SQL02", false, "gold")
		}
		return e.fail(ctx, req, "busy")
	})
	e.setAutoprotect("SQL01", true, "gold")
	e.setAutoprotect("SQL02", true, "gold")
	e.discover("SQL01", database("Sales", 5))
	e.discover("SQL02", database("Orders", 5))
	if err := e.fail(t.Context(), &cofferv1.ProtectionRequested{
		Meta: event.Meta("user-1", "", time.Now()), Database: &cofferv1.DatabaseRef{Instance: "SQL01", Database: "Mine"},
		RequestedBy: "user", Attempt: 1,
	}, "no such policy"); err != nil {
		t.Fatal(err)
	}

	failures := func() int {
		return len(topologytest.Events(e.t, e.nats, cofferv1.SubjectProtectionFailed, func() *cofferv1.ProtectionFailed { return &cofferv1.ProtectionFailed{} }))
	}
	eventually(t, 20*time.Second, func() bool { return failures() == 3 },
		func() string { return "the scheduler did not answer both requests" })
	steady(t, 5*initial, func() bool { return len(e.requests()) == 2 && len(e.jobFailures()) == 0 },
		func() string { return "a retry or a failed job: " + strings.Join(e.requested(), ", ") })
}

// TestRestartDuringBackoff: stopping the service while a retry waits out
// its backoff returns at once, and after a restart the retry comes when
// the interval, counted from the failure, is over (the failure is given
// back with a 3s delay, so the interval must be longer to show that).
func TestRestartDuringBackoff(t *testing.T) {
	const initial = 5 * time.Second
	e := newEnv(t, nil)
	e.scheduler(func(ctx context.Context, req *cofferv1.ProtectionRequested) error {
		if req.GetAttempt() > 1 {
			return nil // the retry is all this test waits for
		}
		return e.fail(ctx, req, "busy")
	})
	stop := e.run(autoprotect.Config{InitialInterval: initial})
	e.setAutoprotect("SQL01", true, "gold")
	e.discover("SQL01", database("Sales", 5))

	var failedAt time.Time
	eventually(t, 20*time.Second, func() bool {
		fs := topologytest.Events(e.t, e.nats, cofferv1.SubjectProtectionFailed, func() *cofferv1.ProtectionFailed { return &cofferv1.ProtectionFailed{} })
		if len(fs) == 0 {
			return false
		}
		failedAt = fs[0].GetMeta().GetTime().AsTime()
		return true
	}, func() string { return "the first request did not fail" })

	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("stopping took %v", time.Since(began))
	if took := time.Since(began); took > initial/2 {
		t.Errorf("stopping took %v while a retry waited; want it given back at once", took)
	}
	if n := len(e.requests()); n != 1 {
		t.Fatalf("%d requests before the restart; want 1", n)
	}

	restarted := e.run(autoprotect.Config{InitialInterval: initial})
	t.Cleanup(func() {
		if err := restarted(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, 20*time.Second, func() bool { return len(e.requests()) == 2 },
		func() string { return "no retry after the restart" })
	r := e.requests()[1]
	if r.GetAttempt() != 2 {
		t.Errorf("retry %v; want attempt 2", r)
	}
	if at := r.GetMeta().GetTime().AsTime(); at.Before(failedAt.Add(initial)) || at.After(failedAt.Add(initial+time.Second)) {
		t.Errorf("retry %v after the failure; want the backoff %v counted from the failure", at.Sub(failedAt), initial)
	}
}
