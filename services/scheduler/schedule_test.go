package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

// world is a scheduler driven by hand, with a stand-in for the streamer and
// committer that commits every queued backup at once.
type world struct {
	t     *testing.T
	bus   *bus.Bus
	cat   *catalog.Catalog
	sched *scheduler.Service
	mu    sync.Mutex
	taken []string // "FULL@2026-11-22T22:00" etc.
	now   time.Time
	// lose makes the next backups fail with their failure event lost: only
	// the jobs bucket records it
	lose int
	// on is where each backup in taken ran: the replica the scheduler
	// chose, or the protected instance
	on []string
	// compression is how each backup in taken asked the vault to
	// compress: "database vault_compression/compression"
	compression []string
	// hold keeps backups running (queued, not committed) until release
	hold   bool
	held   []*cofferv1.RecoveryPointCommitted
	config scheduler.Config
	stop   func() // stops the running scheduler

}

func newWorld(t *testing.T) *world { return newWorldWith(t, scheduler.Config{}) }

// newWorldWith runs the scheduler with cfg; its clock and ticks are the
// world's.
func newWorldWith(t *testing.T, cfg scheduler.Config) *world {
	t.Helper()
	n := topologytest.Start(t, bus.Config{})
	b, cat := n.Bus, n.Catalog
	w := &world{t: t, bus: b, cat: cat, now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), config: cfg}
	// the streamer and committer, at once: every backup commits
	sub, err := b.Consume(t.Context(), bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "streamer"}, func(ctx context.Context, m *bus.Message) error {
		var req cofferv1.BackupRequested
		if err := m.Decode(&req); err != nil {
			return err
		}
		w.mu.Lock()
		w.taken = append(w.taken, fmt.Sprintf("%s@%s", req.GetType().String()[len("BACKUP_TYPE_"):], w.now.Format("01-02T15:04")))
		on := req.GetReplicaInstance()
		if on == "" {
			on = req.GetDatabase().GetInstance()
		}
		w.on = append(w.on, on)
		w.compression = append(w.compression, fmt.Sprintf("%s %s/%v", req.GetDatabase().GetDatabase(), req.GetVaultCompression(), req.GetCompression()))
		now := w.now
		hold := w.hold
		w.mu.Unlock()
		job := req.GetMeta().GetJobId()
		w.mu.Lock()
		lost := w.lose > 0
		if lost {
			w.lose--
		}
		w.mu.Unlock()
		if lost {
			_, err := cat.Bucket(cofferv1.BucketJobs).Put(ctx, catalog.Key(job), &cofferv1.Job{Id: job, State: cofferv1.JobState_JOB_STATE_FAILED})
			return err
		}
		rp := &cofferv1.RecoveryPoint{Id: event.RecoveryPointID(job), Database: req.GetDatabase(), JobId: job,
			Backup: &cofferv1.BackupMetadata{Type: req.GetType(), BackupFinish: timestamppb.New(now), CheckpointLsn: "1"}}
		ev := &cofferv1.RecoveryPointCommitted{Meta: event.Meta(event.ID("committed", job), job, now), RecoveryPoint: rp}
		if hold {
			w.mu.Lock()
			w.held = append(w.held, ev)
			w.mu.Unlock()
			return nil
		}
		return b.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	w.start()
	return w
}

// start runs a scheduler (again, after stopping the one running: a
// restart) on the world's clock.
func (w *world) start() {
	if w.stop != nil {
		w.stop()
	}
	cfg := w.config
	cfg.Now, cfg.Ticks = w.clock, make(chan time.Time)
	s, err := scheduler.New(w.bus, w.cat, cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	w.sched = s
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); <-done }) }
	w.t.Cleanup(w.stop)
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// settle waits until no backup is pending.
func (w *world) settle() {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		idle := true
		w.cat.Bucket(cofferv1.BucketSchedule).List(w.t.Context(), "", func() proto.Message { return &cofferv1.ScheduleState{} },
			func(_ string, m proto.Message) error {
				st := m.(*cofferv1.ScheduleState)
				if st.GetPendingFullJob()+st.GetPendingLogJob()+st.GetPendingDifferentialJob() != "" {
					idle = false
				}
				return nil
			})
		if idle {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatal("backups stay pending")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// advance moves the clock to t in steps, ticking at each.
func (w *world) advance(to time.Time, step time.Duration) {
	w.t.Helper()
	for w.clock().Before(to) {
		w.mu.Lock()
		w.now = w.now.Add(step)
		now := w.now
		w.mu.Unlock()
		if err := w.sched.Tick(w.t.Context(), now); err != nil {
			w.t.Fatal(err)
		}
		w.settle()
	}
}

// release commits the backups held so far and stops holding.
func (w *world) release() {
	w.t.Helper()
	w.mu.Lock()
	held := w.held
	w.held, w.hold = nil, false
	w.mu.Unlock()
	for _, ev := range held {
		if err := w.bus.Publish(w.t.Context(), cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId); err != nil {
			w.t.Fatal(err)
		}
	}
}

// waitTaken waits until n backups were taken in all.
func (w *world) waitTaken(n int) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.takenSince(0)) < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("%d backups taken, want %d", len(w.takenSince(0)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pending counts the queued or running backups the schedule records.
func (w *world) pending() int {
	w.t.Helper()
	n := 0
	err := w.cat.Bucket(cofferv1.BucketSchedule).List(w.t.Context(), "", func() proto.Message { return &cofferv1.ScheduleState{} },
		func(_ string, m proto.Message) error {
			st := m.(*cofferv1.ScheduleState)
			for _, j := range []string{st.GetPendingFullJob(), st.GetPendingLogJob(), st.GetPendingDifferentialJob()} {
				if j != "" {
					n++
				}
			}
			return nil
		})
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) takenSince(k int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.taken[k:]...)
}

func (w *world) db(name, recovery string, readOnly bool) {
	w.t.Helper()
	if _, err := w.cat.Bucket(cofferv1.BucketInventory).Put(w.t.Context(), catalog.Key("sql1", name),
		&cofferv1.DatabaseInfo{Name: name, State: "ONLINE", RecoveryModel: recovery, ReadOnly: readOnly}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) putPolicy(p policy.Policy) {
	w.t.Helper()
	b, _ := json.Marshal(p)
	rec := &cofferv1.PolicyRecord{Name: p.Name, Json: string(b)}
	if err := w.bus.Publish(w.t.Context(), cofferv1.SubjectPolicyPutRequested, &cofferv1.PolicyPutRequested{Meta: event.Meta("pol-"+p.Name, "", w.clock()), Policy: rec}, "pol-"+p.Name); err != nil {
		w.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got cofferv1.PolicyRecord
		if _, err := w.cat.Bucket(cofferv1.BucketPolicies).Get(w.t.Context(), catalog.Key(p.Name), &got); err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatal("policy not stored")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *world) protect(name, pol string) {
	w.t.Helper()
	id := "protect-" + name
	if err := w.bus.Publish(w.t.Context(), cofferv1.SubjectProtectionRequested, &cofferv1.ProtectionRequested{Meta: event.Meta(id, "", w.clock()),
		Database: &cofferv1.DatabaseRef{Instance: "sql1", Database: name}, Policy: pol, RequestedBy: "user"}, id); err != nil {
		w.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st cofferv1.ScheduleState
		if _, err := w.cat.Bucket(cofferv1.BucketSchedule).Get(w.t.Context(), catalog.Key("sql1", name), &st); err == nil {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatal("protection not scheduled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.settle()
}

// TestScheduleWeek drives a week of a weekly-full, daily-differential,
// hourly-log policy and checks exactly what was taken, then that a restart
// neither repeats nor skips, and that slots missed while down run once.
func TestScheduleWeek(t *testing.T) {
	w := newWorld(t)
	w.putPolicy(policy.Policy{Name: "weekly", Full: policy.Schedule{Frequency: policy.Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Differential: &policy.Schedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday}, Hour: 1},
		Log:          &policy.LogSchedule{Every: policy.Duration(time.Hour)},
		Retention:    policy.Retention{Full: policy.Days(14), Differential: policy.Days(14), Log: policy.Days(7)}})
	w.db("Sales", "FULL", false)
	// 2026-11-01 is a Sunday; protection at 00:00 queues the first full
	w.protect("Sales", "weekly")
	if got := w.takenSince(0); len(got) != 1 || got[0] != "FULL@11-01T00:00" {
		t.Fatalf("first full: %v", got)
	}
	w.advance(time.Date(2026, 11, 8, 0, 30, 0, 0, time.UTC), 15*time.Minute)
	count := map[string]int{}
	for _, b := range w.takenSince(0) {
		count[b[:len(b)-len("@11-01T00:00")]]++
	}
	// the first full, the scheduled full of Sunday 01:00, six differentials
	// (Mon to Sat 01:00), and a log every hour from 01:00 Sunday to 00:00
	// the next Sunday: 168
	if count["FULL"] != 2 || count["DIFFERENTIAL"] != 6 || count["LOG"] != 168 {
		t.Errorf("a week: %v, want 2 fulls, 6 differentials, 168 logs", count)
	}

	// restart: nothing repeats
	k := len(w.takenSince(0))
	w.start()
	w.advance(time.Date(2026, 11, 8, 0, 45, 0, 0, time.UTC), 15*time.Minute)
	if got := w.takenSince(k); len(got) != 0 {
		t.Errorf("after a restart within a slot: %v, want nothing", got)
	}
	// down for ten hours across the Sunday full and ten log slots: each
	// type runs once when it comes back
	w.advance(time.Date(2026, 11, 8, 10, 50, 0, 0, time.UTC), 10*time.Hour+5*time.Minute)
	got := w.takenSince(k)
	if len(got) != 2 || got[0] != "FULL@11-08T10:50" || got[1] != "LOG@11-08T10:50" {
		t.Errorf("after ten hours down: %v, want one full and one log", got)
	}
}

// TestScheduleDatabaseState: SIMPLE pauses logs and they resume with a
// full; a read-only database gets fulls only.
func TestScheduleDatabaseState(t *testing.T) {
	w := newWorld(t)
	w.putPolicy(policy.Policy{Name: "p", Full: policy.Schedule{Frequency: policy.Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Differential: &policy.Schedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday}, Hour: 1},
		Log:          &policy.LogSchedule{Every: policy.Duration(time.Hour)},
		Retention:    policy.Retention{Full: policy.Days(14), Differential: policy.Days(14), Log: policy.Days(7)}})
	w.db("Simple", "SIMPLE", false)
	w.db("Archive", "FULL", true)
	w.protect("Simple", "p")
	w.protect("Archive", "p")
	// past Sunday's fulls
	w.advance(time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC), time.Hour)
	k := len(w.takenSince(0))
	w.advance(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), time.Hour)
	// SIMPLE takes differentials but no logs; read-only takes neither
	if got := w.takenSince(k); len(got) != 1 || got[0] != "DIFFERENTIAL@11-02T01:00" {
		t.Errorf("Sunday 02:00 to Tuesday: %v, want only the SIMPLE database's Monday differential", got)
	}
	// back to FULL: the next log slot takes a full first, then logs
	w.db("Simple", "FULL", false)
	k = len(w.takenSince(0))
	w.advance(time.Date(2026, 11, 3, 2, 0, 0, 0, time.UTC), time.Hour)
	// the 01:00 differential slot becomes the full the chain needs; logs
	// follow
	if got := w.takenSince(k); len(got) != 2 || got[0] != "FULL@11-03T01:00" || got[1] != "LOG@11-03T02:00" {
		t.Errorf("after SIMPLE -> FULL: %v, want a full, then logs", got)
	}
}

// TestPolicyCompression: every backup queued (a first full, a scheduled
// log, one on demand) asks the vault for the compression its policy names,
// zstd when it names none; the old flag says whether to compress at all,
// for a streamer that predates the name.
func TestPolicyCompression(t *testing.T) {
	w := newWorld(t)
	hourly := func(name string, c policy.Compression) policy.Policy {
		return policy.Policy{Name: name, Full: policy.Schedule{Frequency: policy.Daily, Hour: 23},
			Log: &policy.LogSchedule{Every: policy.Duration(time.Hour)}, Retention: policy.Retention{Full: policy.Days(7), Log: policy.Days(7)},
			Compression: c}
	}
	for _, tt := range []struct {
		db   string
		c    policy.Compression
		want string
	}{
		{"Fast", policy.S2, "s2/true"},
		{"Raw", policy.Uncompressed, "none/false"},
		{"Tight", policy.Zstd, "zstd/true"},
		{"Unsaid", "", "zstd/true"},
	} {
		t.Run(tt.db, func(t *testing.T) {
			w.putPolicy(hourly(tt.db, tt.c))
			w.db(tt.db, "FULL", false)
			k := len(w.takenSince(0))
			w.protect(tt.db, tt.db)
			w.advance(w.clock().Add(time.Hour), time.Hour)
			od := fmt.Sprintf("od-%s", tt.db)
			if err := w.bus.Publish(t.Context(), cofferv1.SubjectBackupOnDemand, &cofferv1.BackupOnDemandRequested{Meta: event.Meta(od, "job-"+od, w.clock()),
				Database: &cofferv1.DatabaseRef{Instance: "sql1", Database: tt.db}, Type: cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL}, od); err != nil {
				t.Fatal(err)
			}
			// the first full, the log, the on-demand full: other databases'
			// logs come between
			var taken, got []string
			deadline := time.Now().Add(10 * time.Second)
			for {
				taken, got = nil, nil
				w.mu.Lock()
				for i, c := range w.compression[k:] {
					if db, c, _ := strings.Cut(c, " "); db == tt.db {
						taken, got = append(taken, w.taken[k+i]), append(got, c)
					}
				}
				w.mu.Unlock()
				if len(got) >= 3 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(got) != 3 {
				t.Errorf("backups of %s taken: %v; want 3", tt.db, taken)
			}
			for i, c := range got {
				if c != tt.want {
					t.Errorf("%s: vault_compression/compression %s; want %s", taken[i], c, tt.want)
				}
			}
			w.settle()
		})
	}
}

// TestLostFailureDoesNotBlock: a backup that failed without its failure
// reaching the scheduler does not block that backup type for good.
func TestLostFailureDoesNotBlock(t *testing.T) {
	w := newWorld(t)
	w.putPolicy(policy.Policy{Name: "hourly", Full: policy.Schedule{Frequency: policy.Daily, Hour: 23},
		Log: &policy.LogSchedule{Every: policy.Duration(time.Hour)}, Retention: policy.Retention{Full: policy.Days(7), Log: policy.Days(7)}})
	w.db("Sales", "FULL", false)
	w.protect("Sales", "hourly")
	w.mu.Lock()
	w.lose = 1
	w.mu.Unlock()
	k := len(w.takenSince(0))
	// the 01:00 log fails, its failure lost; ticks go on
	w.mu.Lock()
	w.now = time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	w.mu.Unlock()
	if err := w.sched.Tick(t.Context(), w.clock()); err != nil {
		t.Fatal(err)
	}
	// until the jobs bucket records the failure: the 02:00 tick must find
	// it there
	deadline := time.Now().Add(10 * time.Second)
	for failed := 0; failed == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the lost failure never reached the jobs bucket")
		}
		time.Sleep(5 * time.Millisecond)
		err := w.cat.Bucket(cofferv1.BucketJobs).List(t.Context(), "", func() proto.Message { return &cofferv1.Job{} }, func(_ string, m proto.Message) error {
			if m.(*cofferv1.Job).GetState() == cofferv1.JobState_JOB_STATE_FAILED {
				failed++
			}
			return nil
		})
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			t.Fatal(err)
		}
	}
	w.advance(time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC), time.Hour)
	got := w.takenSince(k)
	if len(got) != 3 || got[1] != "LOG@11-01T02:00" || got[2] != "LOG@11-01T03:00" {
		t.Errorf("after a lost failure: %v, want the 01:00 log, then logs at 02:00 and 03:00", got)
	}
}

// TestConcurrencyPerInstance: no more backups are queued or running on an
// instance than its limit; the rest stay due and run as room frees up.
func TestConcurrencyPerInstance(t *testing.T) {
	w := newWorldWith(t, scheduler.Config{MaxConcurrentPerInstance: 3})
	w.putPolicy(policy.Policy{Name: "hourly", Full: policy.Schedule{Frequency: policy.Daily, Hour: 23},
		Log: &policy.LogSchedule{Every: policy.Duration(time.Hour)}, Retention: policy.Retention{Full: policy.Days(7), Log: policy.Days(7)}})
	for k := range 5 {
		name := fmt.Sprintf("db%d", k)
		w.db(name, "FULL", false)
		w.protect(name, "hourly")
	}
	k := len(w.takenSince(0)) // the five first fulls
	w.mu.Lock()
	w.hold = true
	w.now = time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	w.mu.Unlock()
	if err := w.sched.Tick(t.Context(), w.clock()); err != nil {
		t.Fatal(err)
	}
	w.waitTaken(k + 3)
	if n := w.pending(); n != 3 {
		t.Fatalf("after the 01:00 tick with five logs due: %d backups pending, want the limit of 3", n)
	}
	// a second tick while they run queues nothing more
	if err := w.sched.Tick(t.Context(), w.clock()); err != nil {
		t.Fatal(err)
	}
	if n := w.pending(); n != 3 {
		t.Fatalf("a tick while three run: %d pending, want 3", n)
	}
	w.release()
	w.settle()
	w.advance(time.Date(2026, 11, 1, 1, 15, 0, 0, time.UTC), 15*time.Minute)
	got := w.takenSince(k)
	if len(got) != 5 {
		t.Fatalf("after the three finished: %v, want the two waiting logs too (5 in all)", got)
	}
	for _, b := range got[3:] {
		if b != "LOG@11-01T01:15" {
			t.Errorf("a waiting log ran as %s, want LOG@11-01T01:15", b)
		}
	}
}

// TestPolicyPutIfAbsent: a rebuild's copy of a policy (if_absent) is
// stored where none of its name is, and never over one stored since.
func TestPolicyPutIfAbsent(t *testing.T) {
	w := newWorld(t)
	daily := func(name string, hour int) policy.Policy {
		return policy.Policy{Name: name, Full: policy.Schedule{Frequency: policy.Daily, Hour: hour}, Retention: policy.Retention{Full: policy.Days(7)}}
	}
	w.putPolicy(daily("gold", 1))
	for _, p := range []policy.Policy{daily("gold", 5), daily("silver", 5)} {
		b, _ := json.Marshal(p)
		id := "copy-" + p.Name
		ev := &cofferv1.PolicyPutRequested{Meta: event.Meta(id, "", w.clock()), Policy: &cofferv1.PolicyRecord{Name: p.Name, Json: string(b)}, IfAbsent: true}
		if err := w.bus.Publish(t.Context(), cofferv1.SubjectPolicyPutRequested, ev, id); err != nil {
			t.Fatal(err)
		}
	}
	w.putPolicy(daily("barrier", 1)) // handled after both: the consumer keeps the order
	for name, hour := range map[string]int{"gold": 1, "silver": 5} {
		var rec cofferv1.PolicyRecord
		if _, err := w.cat.Bucket(cofferv1.BucketPolicies).Get(t.Context(), catalog.Key(name), &rec); err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		var p policy.Policy
		if err := json.Unmarshal([]byte(rec.GetJson()), &p); err != nil || p.Full.Hour != hour {
			t.Errorf("policy %s: full at %d (%v); want %d", name, p.Full.Hour, err, hour)
		}
	}
}
