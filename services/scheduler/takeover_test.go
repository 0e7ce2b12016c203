package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/testproc"
	"github.com/cofferhq/coffer/pkg/topology"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

// The environment of a scheduler run as a child process by
// TestSchedulersTakeOver: the test binary runs it instead of its tests.
const (
	childNATSEnv    = "COFFER_TEST_SCHEDULER_NATS"
	childReplicaEnv = "COFFER_TEST_SCHEDULER_REPLICA"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childNATSEnv); url != "" {
		os.Exit(runChildScheduler(url, os.Getenv(childReplicaEnv)))
	}
	os.Exit(m.Run())
}

// runChildScheduler runs a scheduler replica against the NATS server at
// url, ticking every second on the real clock, until SIGTERM.
func runChildScheduler(url, replica string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", replica)
	fail := func(err error) int {
		logger.Error("scheduler child", "err", err)
		return 1
	}
	nc, err := nats.Connect(url, nats.Name("scheduler-"+replica))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{Logger: logger, FetchWait: 200 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	cat, err := topology.Setup(ctx, b, topology.Config{})
	if err != nil {
		return fail(err)
	}
	s, err := scheduler.New(b, cat, scheduler.Config{Logger: logger, TickInterval: time.Second, Replica: replica})
	if err != nil {
		return fail(err)
	}
	if err := s.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// TestSchedulersTakeOver runs two scheduler replicas as processes of their
// own over one NATS server, 300 databases on 1-minute logs spread over the
// minute (five falling due every second), and a stand-in streamer that
// commits every backup it is sent. Once both replicas hold partitions and
// logs flow, it kills one with SIGKILL in the middle of a minute, and
// checks that the other holds every partition within 10 seconds, and that
// over the whole run every database got exactly one log for each of its
// slots: none dispatched twice, none skipped.
func TestSchedulersTakeOver(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about two minutes of real time; make test runs it without -short")
	}
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{FetchWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cat, err := topology.Setup(ctx, b, topology.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const dbs, instances = 300, 6
	p := seedFleet(t, cat, time.Now(), dbs, instances, time.Minute)

	// the stand-in streamer: record each log it is sent, commit it
	var (
		mu       sync.Mutex
		received = map[string]map[string]int{} // database key -> job id -> times received
	)
	sub, err := b.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "stand-in", Concurrency: 16},
		func(ctx context.Context, m *bus.Message) error {
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			job, ref := req.GetMeta().GetJobId(), req.GetDatabase()
			key := catalog.Key(ref.GetInstance(), ref.GetDatabase())
			mu.Lock()
			if received[key] == nil {
				received[key] = map[string]int{}
			}
			received[key][job]++
			mu.Unlock()
			ev := committedFor(&req, time.Now())
			return b.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId)
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)

	start := time.Now()
	a := startChildScheduler(t, srv.ClientURL(), "replica-a")
	bb := startChildScheduler(t, srv.ClientURL(), "replica-b")
	leases := cat.Bucket(cofferv1.BucketSchedulerLeases)
	// both replicas hold a share, and a log reached the stand-in
	waitUntil(t, 30*time.Second, "both replicas to hold partitions", func() bool {
		held := holders(t, leases)
		return held["replica-a"] > 0 && held["replica-b"] > 0
	})
	t.Logf("shares before the kill: %v", holders(t, leases))
	// in the middle of the second minute: logs fall due every second
	next := start.Truncate(time.Minute).Add(time.Minute + 30*time.Second)
	if time.Until(next) < 10*time.Second {
		next = next.Add(time.Minute)
	}
	time.Sleep(time.Until(next)) // a moment on the clock, not a condition to poll
	mu.Lock()
	before := 0
	for _, jobs := range received {
		before += len(jobs)
	}
	mu.Unlock()
	if before == 0 {
		t.Fatalf("no log reached the stand-in streamer in %v", time.Since(start).Round(time.Second))
	}
	killed := time.Now()
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.Wait() //nolint:errcheck // killed
	waitUntil(t, 10*time.Second, "replica-b to hold every partition within 10 s of the kill", func() bool {
		return holders(t, leases)["replica-b"] == 32
	})
	takeover := time.Since(killed)
	t.Logf("replica-a killed with %d logs sent; replica-b held all 32 partitions %v later", before, takeover.Round(time.Millisecond))

	// run on for a whole minute after the takeover, and a little: every
	// database has a slot in it
	end := time.Now().Add(time.Minute + 5*time.Second)
	time.Sleep(time.Until(end))
	if err := bb.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	bb.Wait() //nolint:errcheck // its output is in the log on failure

	// every slot of every database from its first after the start to the
	// last that had a minute to be queued, once
	mu.Lock()
	defer mu.Unlock()
	missed, twice := 0, 0
	forEachTakeoverDB(dbs, instances, func(inst, name string) {
		key := catalog.Key(inst, name)
		got := received[key]
		for slot := p.NextLogOf(start, inst, name); slot.Before(end.Add(-5 * time.Second)); slot = slot.Add(time.Minute) {
			want := ""
			for job := range got {
				if strings.HasPrefix(job, "j"+slot.UTC().Format("20060102T150405")+"-") {
					want = job
				}
			}
			switch {
			case want == "":
				missed++
				if missed <= 5 {
					t.Errorf("%s/%s: no log for its slot %s (got %v)", inst, name, slot.Format(time.TimeOnly), slices.Sorted(mapsKeys(got)))
				}
			case got[want] > 1:
				twice++
				t.Errorf("%s/%s: the log of slot %s was sent %d times", inst, name, slot.Format(time.TimeOnly), got[want])
			}
		}
	})
	sent := 0
	for _, jobs := range received {
		sent += len(jobs)
	}
	t.Logf("%d databases, %v: %d logs sent, %d slots missed, %d sent twice; takeover in %v", dbs, end.Sub(start).Round(time.Second),
		sent, missed, twice, takeover.Round(time.Millisecond))
	// and the work stream stored each job once (a work queue: its last
	// sequence counts every message it ever stored, and a repeated message
	// id gets none)
	info, err := b.JetStream().Stream(ctx, cofferv1.StreamWork)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.LastSeq != uint64(sent) {
		t.Errorf("the work stream stored %d messages for %d distinct jobs", si.State.LastSeq, sent)
	}
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// startChildScheduler runs the test binary as a scheduler replica named
// replica, killed with the test if need be.
func startChildScheduler(t *testing.T, url, replica string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childNATSEnv+"="+url, childReplicaEnv+"="+replica)
	out := &testproc.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = testproc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // may have ended
		cmd.Wait()         //nolint:errcheck // killed
		if t.Failed() {
			t.Logf("%s's output:\n%s", replica, out.String())
		}
	})
	return cmd
}

// holders counts the live partitions each replica holds.
func holders(t *testing.T, leases *catalog.Bucket) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := leases.List(t.Context(), "partition", func() proto.Message { return &cofferv1.SchedulerLease{} }, func(_ string, m proto.Message) error {
		if o := m.(*cofferv1.SchedulerLease).GetOwner(); o != "" {
			out[o]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitUntil polls cond until it holds, failing the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// forEachTakeoverDB calls fn with the instance and name of each database.
func forEachTakeoverDB(dbs, instances int, fn func(inst, name string)) {
	for i := range dbs {
		fn(fmt.Sprintf("sql%d", i%instances), fmt.Sprintf("db%03d", i/instances))
	}
}

// seedFleet writes a policy with a log every interval, spread, and for
// each database its inventory record, its protection and a schedule with
// a full taken and its first log at its first slot after now; the daily
// full is half a day away.
func seedFleet(t *testing.T, cat *catalog.Catalog, now time.Time, dbs, instances int, every time.Duration) *policy.Policy {
	t.Helper()
	ctx := t.Context()
	p := policy.Policy{Name: "spread", Full: policy.Schedule{Frequency: policy.Daily, Hour: (now.UTC().Hour() + 12) % 24},
		Log: &policy.LogSchedule{Every: policy.Duration(every), Spread: true}, Retention: policy.Retention{Full: policy.Days(30), Log: policy.Days(30)}}
	putPolicy(t, cat, p)
	forEachTakeoverDB(dbs, instances, func(inst, name string) {
		key := catalog.Key(inst, name)
		ref := &cofferv1.DatabaseRef{Instance: inst, Database: name}
		for _, put := range []struct {
			bucket string
			m      proto.Message
		}{
			{cofferv1.BucketInventory, &cofferv1.DatabaseInfo{Name: name, State: "ONLINE", RecoveryModel: "FULL"}},
			{cofferv1.BucketProtected, &cofferv1.ProtectedItem{Database: ref, Policy: p.Name, State: cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED,
				ProtectedAt: timestamppb.New(now.Add(-time.Hour))}},
			{cofferv1.BucketSchedule, &cofferv1.ScheduleState{Database: ref, Policy: p.Name, LastFull: "rp-seed-" + key, LastFullCheckpointLsn: "1",
				LastFullAt: timestamppb.New(now.Add(-time.Hour)), NextFull: timestamppb.New(p.NextFull(now)),
				NextLog: timestamppb.New(p.NextLogOf(now, inst, name))}},
		} {
			if _, err := cat.Bucket(put.bucket).Put(ctx, key, put.m); err != nil {
				t.Fatal(err)
			}
		}
	})
	return &p
}

// putPolicy stores p as the gateway would.
func putPolicy(t *testing.T, cat *catalog.Catalog, p policy.Policy) {
	t.Helper()
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Bucket(cofferv1.BucketPolicies).Put(t.Context(), catalog.Key(p.Name), &cofferv1.PolicyRecord{Name: p.Name, Json: string(js)}); err != nil {
		t.Fatal(err)
	}
}
