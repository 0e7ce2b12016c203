package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

// TestTickLooksOnlyAtWhatIsDue: over 600 databases on spread 15-minute
// logs, the first tick looks at every database, and from then on a tick
// looks at exactly the databases due, none when none is, one
// whose inventory record or protection changed, never again at one its
// protection rules out, and at every database of a policy that changed.
func TestTickLooksOnlyAtWhatIsDue(t *testing.T) {
	n := topologytest.Start(t, bus.Config{})
	ctx := t.Context()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const dbs = 600
	p := seedFleet(t, n.Catalog, start, dbs, 6, 15*time.Minute)

	// a streamer that commits what it is sent
	var (
		mu   sync.Mutex
		sent int
	)
	sub, err := n.Bus.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "stand-in", Concurrency: 8},
		func(ctx context.Context, m *bus.Message) error {
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			ev := committedFor(&req, req.GetMeta().GetTime().AsTime())
			if err := n.Bus.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId); err != nil {
				return err
			}
			mu.Lock()
			sent++
			mu.Unlock()
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	var clock time.Time
	s := runScheduler(t, n.Bus, n.Catalog, scheduler.Config{Ticks: make(chan time.Time), MaxConcurrentPerInstance: dbs,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})

	schedules := n.Catalog.Bucket(cofferv1.BucketSchedule)
	// dueAt counts the schedules due at now, but for skip
	dueAt := func(now time.Time, skip string) int {
		k := 0
		err := schedules.List(ctx, "", func() proto.Message { return &cofferv1.ScheduleState{} }, func(key string, m proto.Message) error {
			if nl := m.(*cofferv1.ScheduleState).GetNextLog().AsTime(); key != skip && !nl.After(now) {
				k++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// tick ticks at now and returns how many databases it looked at,
	// then waits until every backup it queued is committed and handled
	tick := func(now time.Time) int {
		t.Helper()
		mu.Lock()
		clock = now
		mu.Unlock()
		before := s.LookedAt()
		if err := s.Tick(ctx, now); err != nil {
			t.Fatal(err)
		}
		looked := int(s.LookedAt() - before)
		// the scheduler handles commits one at a time (MaxAckPending 1):
		// a few hundred take more than 20 s under the race detector on a
		// loaded machine, as CI once found
		waitUntil(t, 90*time.Second, "every backup queued to be committed and handled", func() bool {
			pending := 0
			schedules.List(ctx, "", func() proto.Message { return &cofferv1.ScheduleState{} }, func(_ string, m proto.Message) error { //nolint:errcheck // polled again
				if m.(*cofferv1.ScheduleState).GetPendingLogJob() != "" {
					pending++
				}
				return nil
			})
			return pending == 0
		})
		return looked
	}
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: the tick looked at %d databases, want %d", what, got, want)
		}
	}

	// the first tick looks at every database once: whatever changed while
	// no scheduler ran
	check("the first tick", tick(start), dbs)
	check("nothing due", tick(start), 0)
	at := start.Add(5 * time.Minute)
	due := dueAt(at, "")
	if due < dbs/5 || due > dbs/2 {
		t.Fatalf("%d of %d databases due five minutes into a spread 15-minute interval", due, dbs)
	}
	check("a third of the interval", tick(at), due)
	mu.Lock()
	if sent != due {
		t.Errorf("%d backups queued for %d databases due", sent, due)
	}
	mu.Unlock()
	check("the same moment again", tick(at), 0)
	// the RPO lag, from the schedules: none for a database whose log just
	// committed, since its protection for one that has no backup yet
	lags, err := s.RPOLag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	for _, l := range lags {
		switch l.Lag {
		case 0:
			zero++
		case at.Sub(start.Add(-time.Hour)):
		default:
			t.Errorf("%s/%s: RPO lag %v, want 0 or %v", l.Instance, l.Database, l.Lag, at.Sub(start.Add(-time.Hour)))
		}
	}
	if len(lags) != dbs || zero != due {
		t.Errorf("RPO lags of %d databases, %d of them 0; want %d, %d", len(lags), zero, dbs, due)
	}

	// one database's recovery model changes; another is unprotected
	inst, name := "sql1", "db010"
	if _, err := n.Catalog.Bucket(cofferv1.BucketInventory).Put(ctx, catalog.Key(inst, name),
		&cofferv1.DatabaseInfo{Name: name, State: "ONLINE", RecoveryModel: "SIMPLE"}); err != nil {
		t.Fatal(err)
	}
	check("after an inventory change", tick(at), 1)
	gone := catalog.Key("sql2", "db020")
	if _, err := n.Catalog.Bucket(cofferv1.BucketProtected).Put(ctx, gone, &cofferv1.ProtectedItem{
		Database: &cofferv1.DatabaseRef{Instance: "sql2", Database: "db020"}, Policy: p.Name,
		State: cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED, ProtectedAt: timestamppb.New(start)}); err != nil {
		t.Fatal(err)
	}
	check("after a protection stopped", tick(at), 1)
	// a whole interval later every database is due, but the unprotected
	// one is parked
	later := start.Add(25 * time.Minute)
	due = dueAt(later, gone)
	check("an interval later", tick(later), due)
	check("the same moment again", tick(later), 0)

	// a changed policy: every database under it is looked at, the parked
	// one too
	changed := *p
	changed.Retention.Log = changed.Retention.Log * 2
	putPolicy(t, n.Catalog, changed)
	check("after the policy changed", tick(later), dbs)
	check("the same moment again", tick(later), 0)
}

// TestInstanceLimitAcrossReplicas: two scheduler replicas share the
// fleet, every database of three instances is due at once and nothing
// commits: each instance has exactly its limit of backups queued, however
// the replicas split the partitions, and ticking again queues no more.
func TestInstanceLimitAcrossReplicas(t *testing.T) {
	n := topologytest.Start(t, bus.Config{})
	ctx := t.Context()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const dbs, instances, limit = 60, 3, 4
	seedFleet(t, n.Catalog, start, dbs, instances, 15*time.Minute)
	var mu sync.Mutex
	queued := map[string]int{} // by instance
	sub, err := n.Bus.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "stand-in", Concurrency: 8},
		func(ctx context.Context, m *bus.Message) error {
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			mu.Lock()
			queued[req.GetDatabase().GetInstance()]++
			mu.Unlock()
			return nil // held: never committed
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	var reps []*scheduler.Service
	for _, name := range []string{"replica-a", "replica-b"} {
		reps = append(reps, runScheduler(t, n.Bus, n.Catalog, scheduler.Config{Ticks: make(chan time.Time), MaxConcurrentPerInstance: limit,
			Replica: name, Now: func() time.Time { return start.Add(time.Hour) }}))
	}
	leases := n.Catalog.Bucket(cofferv1.BucketSchedulerLeases)
	waitUntil(t, 20*time.Second, "both replicas to hold partitions", func() bool {
		h := holders(t, leases)
		return h["replica-a"] > 0 && h["replica-b"] > 0 && h["replica-a"]+h["replica-b"] == 32
	})
	for range 3 {
		for _, s := range reps {
			if err := s.Tick(ctx, start.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]int{}
	forEachTakeoverDB(dbs, instances, func(inst, _ string) { want[inst] = limit })
	waitUntil(t, 10*time.Second, "every instance's backups to reach the stand-in", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, k := range queued {
			total += k
		}
		return total >= instances*limit
	})
	// the schedules agree: no more pending than the limit per instance
	pending := map[string]int{}
	err = n.Catalog.Bucket(cofferv1.BucketSchedule).List(ctx, "", func() proto.Message { return &cofferv1.ScheduleState{} }, func(_ string, m proto.Message) error {
		st := m.(*cofferv1.ScheduleState)
		if st.GetPendingLogJob() != "" {
			pending[st.GetDatabase().GetInstance()]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for inst, w := range want {
		if queued[inst] != w || pending[inst] != w {
			t.Errorf("%s: %d backups queued, %d pending in the schedules; want %d (the limit)", inst, queued[inst], pending[inst], w)
		}
	}
	t.Logf("partitions %v; queued per instance %v", holders(t, leases), queued)
}

// committedFor is the commit of the backup req asked for, finished at
// finish, as a streamer and the committer would announce it.
func committedFor(req *cofferv1.BackupRequested, finish time.Time) *cofferv1.RecoveryPointCommitted {
	job := req.GetMeta().GetJobId()
	rp := &cofferv1.RecoveryPoint{Id: event.RecoveryPointID(job), Database: req.GetDatabase(), JobId: job,
		Backup: &cofferv1.BackupMetadata{Type: req.GetType(), BackupFinish: timestamppb.New(finish), LastLsn: "2", CheckpointLsn: "1"}}
	return &cofferv1.RecoveryPointCommitted{Meta: event.Meta(event.ID("committed", job), job, finish), RecoveryPoint: rp}
}

// runScheduler runs a scheduler on cfg until the test ends.
func runScheduler(t testing.TB, b *bus.Bus, cat *catalog.Catalog, cfg scheduler.Config) *scheduler.Service {
	t.Helper()
	s, err := scheduler.New(b, cat, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// TestFreedSlotTicks: with the timer's ticks an hour apart, a backup that
// ends frees a slot on its instance, and the backups due and waiting for
// one go within seconds: three databases due on an instance allowed one
// backup at a time are all backed up, one after another.
func TestFreedSlotTicks(t *testing.T) {
	n := topologytest.Start(t, bus.Config{})
	ctx := t.Context()
	const dbs = 3
	seedFleet(t, n.Catalog, time.Now().Add(-2*time.Hour), dbs, 1, time.Minute)
	var (
		mu  sync.Mutex
		got []string
	)
	sub, err := n.Bus.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "stand-in", Concurrency: 1},
		func(ctx context.Context, m *bus.Message) error {
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			mu.Lock()
			got = append(got, req.GetDatabase().GetDatabase())
			mu.Unlock()
			ev := committedFor(&req, time.Now())
			return n.Bus.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId)
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	runScheduler(t, n.Bus, n.Catalog, scheduler.Config{TickInterval: time.Hour, MaxConcurrentPerInstance: 1})
	// a backup of the first database ends: the kick that starts it all
	first := &cofferv1.BackupRequested{Meta: event.Meta("work-x", "j-outside", time.Now()),
		Database: &cofferv1.DatabaseRef{Instance: "sql0", Database: "db000"}, Type: cofferv1.BackupType_BACKUP_TYPE_LOG}
	ev := committedFor(first, time.Now())
	if err := n.Bus.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the three databases' logs, one at a time", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= dbs
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("backed up in turn: %v", got)
}
