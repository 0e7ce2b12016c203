package scheduler_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestAvailabilityGroupRouting: the group's backup preference decides
// where each backup runs (REFERENCE.md): fulls on the primary, logs on the
// preferred replica, the primary when the preferred secondary is not
// registered (unless SECONDARY_ONLY, which fails visibly instead); and a
// group database is protected once, whichever replica asks.
func TestAvailabilityGroupRouting(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	var failures []string
	var confirmed []*cofferv1.ProtectedItem
	for _, spec := range []bus.ConsumerSpec{
		{Stream: cofferv1.StreamJobs, Durable: "test-failed", FilterSubjects: []string{cofferv1.SubjectJobFailed}},
		{Stream: cofferv1.StreamEvents, Durable: "test-configured", FilterSubjects: []string{cofferv1.SubjectProtectionConfigured}},
	} {
		sub, err := w.bus.Consume(t.Context(), spec, func(_ context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			switch m.Subject {
			case cofferv1.SubjectJobFailed:
				var f cofferv1.JobFailed
				if err := m.Decode(&f); err != nil {
					return err
				}
				failures = append(failures, f.GetReason())
			default:
				var c cofferv1.ProtectionConfigured
				if err := m.Decode(&c); err != nil {
					return err
				}
				confirmed = append(confirmed, c.GetItem())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Stop)
	}
	w.putPolicy(policy.Policy{Name: "ag", Full: policy.Schedule{Frequency: policy.Daily, Hour: 23},
		Log: &policy.LogSchedule{Every: policy.Duration(15 * time.Minute)}, Retention: policy.Retention{Full: policy.Days(7), Log: policy.Days(7)}})
	basic := false // the group is a basic availability group
	replica := func(instance, preference string, primary, preferred bool) {
		t.Helper()
		state := "SYNCHRONIZED"
		if !primary && !preferred {
			state = "NOT SYNCHRONIZING"
		}
		info := &cofferv1.DatabaseInfo{Name: "Orders", State: "ONLINE", RecoveryModel: "FULL",
			GroupDatabaseId: "5e2b1c0a-0000-4000-8000-00000000a001", AvailabilityGroup: "ag1", BackupPreference: preference,
			PrimaryReplica: primary, PreferredBackupReplica: preferred, SynchronizationState: state, BasicAvailabilityGroup: basic}
		if _, err := w.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key(instance, "Orders"), info); err != nil {
			t.Fatal(err)
		}
	}
	ons := func(k int) []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return append([]string(nil), w.on[k:]...)
	}
	replica("sql1", "SECONDARY", true, false)
	replica("sql2", "SECONDARY", false, true)
	w.protect("Orders", "ag")
	if got := ons(0); len(got) != 1 || got[0] != "sql1" {
		t.Fatalf("the first full ran on %v, want the primary sql1", got)
	}
	w.advance(time.Date(2026, 11, 1, 0, 30, 0, 0, time.UTC), 15*time.Minute)
	if got, on := w.takenSince(1), ons(1); len(got) != 2 || on[0] != "sql2" || on[1] != "sql2" {
		t.Fatalf("logs: %v on %v, want two logs on the preferred secondary sql2", got, on)
	}

	// the other replica asks for protection (auto-protection on both
	// instances): confirmed as the existing protection, nothing new queued
	id := "protect-sql2-Orders"
	if err := w.bus.Publish(t.Context(), cofferv1.SubjectProtectionRequested, &cofferv1.ProtectionRequested{Meta: event.Meta(id, "", w.clock()),
		Database: &cofferv1.DatabaseRef{Instance: "sql2", Database: "Orders"}, Policy: "ag", RequestedBy: "autoprotect"}, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(confirmed) == 2 })
	mu.Lock()
	if got := confirmed[1].GetDatabase(); got.GetInstance() != "sql1" {
		t.Errorf("protecting the second replica confirmed %v, want the protection of sql1", got)
	}
	mu.Unlock()
	var st cofferv1.ScheduleState
	if _, err := w.cat.Bucket(cofferv1.BucketSchedule).Get(t.Context(), catalog.Key("sql2", "Orders"), &st); err == nil {
		t.Error("the second replica got a schedule of its own: two chains for one database")
	}

	// the secondary stops synchronizing: the primary is preferred now
	replica("sql2", "SECONDARY", false, false)
	replica("sql1", "SECONDARY", true, true)
	w.advance(time.Date(2026, 11, 1, 0, 45, 0, 0, time.UTC), 15*time.Minute)
	if on := ons(3); len(on) != 1 || on[0] != "sql1" {
		t.Errorf("with the secondary down, the log ran on %v, want the primary", on)
	}
	// the preferred secondary is not registered: logs fall back to the
	// primary, which SQL Server allows under SECONDARY
	replica("sql1", "SECONDARY", true, false)
	w.advance(time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC), 15*time.Minute)
	if on := ons(4); len(on) != 1 || on[0] != "sql1" {
		t.Errorf("with no registered replica preferred, the log ran on %v, want the primary", on)
	}
	// SECONDARY_ONLY and no secondary: the log is refused, visibly
	replica("sql1", "SECONDARY_ONLY", true, false)
	replica("sql2", "SECONDARY_ONLY", false, false)
	w.advance(time.Date(2026, 11, 1, 1, 15, 0, 0, time.UTC), 15*time.Minute)
	if on := ons(5); len(on) != 0 {
		t.Errorf("under SECONDARY_ONLY with no secondary, a log ran on %v", on)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(failures) == 1 })
	mu.Lock()
	if !strings.Contains(failures[0], "secondary replicas only") || !strings.Contains(failures[0], "ag1") {
		t.Errorf("refusal: %q, want it to name the group and its SECONDARY_ONLY preference", failures[0])
	}
	mu.Unlock()
	// the secondary is back: logs resume there
	replica("sql2", "SECONDARY_ONLY", false, true)
	w.advance(time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC), 15*time.Minute)
	if on := ons(5); len(on) != 1 || on[0] != "sql2" {
		t.Errorf("with the secondary back, the log ran on %v, want sql2", on)
	}
	// a basic availability group (Standard edition) takes no backup on
	// its secondary, even the one its preference names
	basic = true
	replica("sql1", "SECONDARY", true, false)
	replica("sql2", "SECONDARY", false, true)
	w.advance(time.Date(2026, 11, 1, 1, 45, 0, 0, time.UTC), 15*time.Minute)
	if on := ons(6); len(on) != 1 || on[0] != "sql1" {
		t.Errorf("in a basic availability group, the log ran on %v, want the primary sql1", on)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
