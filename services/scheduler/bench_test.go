package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

const (
	benchInstances = 50
	benchLogEvery  = 15 * time.Minute
	benchTick      = 15 * time.Second // the scheduler's default tick interval
	// benchWait bounds every wait of the benchmark, so that a scheduler that
	// stops queueing fails it instead of hanging it.
	benchWait = 2 * time.Minute
)

// BenchmarkSchedulerScale measures the scheduler with 10,000 and with
// 100,000 protected databases on 50 instances, all under one policy with a
// log backup every 15 minutes, spread over the interval (log.spread). Each
// iteration is one tick, 15 seconds of the fake clock after the last
// (the default tick interval), so that 60 iterations are one interval in
// which every database's log falls due once. An iteration ticks and waits
// until a stand-in streamer has received every backup due in those 15
// seconds; then, with the timer stopped, the stand-in commits them and the
// scheduler handles the commits, so that each database's next log can be
// queued.
//
// It reports the dispatch lag of a database (the wall time from the start
// of its tick to its work's arrival at the stand-in streamer) at the 50th
// and 99th percentiles; the process CPU time of a tick (the embedded NATS
// server and the stand-in's receiving included); the CPU time of handling
// that tick's commits, per tick, apart; and the heap in use afterwards
// (the embedded server's included). The catalog is seeded and the
// scheduler's first read of it done before the timer starts.
//
//	go test -run '^$' -bench BenchmarkSchedulerScale -benchtime 60x ./services/scheduler/
func BenchmarkSchedulerScale(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		// one environment per size, kept over the rounds of iterations the
		// benchmark runs, and torn down before the next size so that the
		// heap holds one
		var e *scaleEnv
		b.Run(fmt.Sprintf("databases=%d", n), func(sb *testing.B) {
			if e == nil {
				e = newScaleEnv(b, n)
			}
			benchScale(sb, e)
		})
		if e != nil {
			e.close()
		}
	}
}

// scaleEnv is one size of BenchmarkSchedulerScale: seeded once, whatever
// number of iterations the benchmark asks for next.
type scaleEnv struct {
	n     *topologytest.Env
	s     *scheduler.Service
	dbs   int
	start time.Time
	ticks int                         // ticks so far, over every round of iterations
	due   [900]int                    // databases whose log slot is at this second of the interval
	mu    sync.Mutex                  // guards what the stand-in streamer fills
	now   time.Time                   // the fake clock
	slot  time.Time                   // the tick whose work is awaited
	want  int                         // backups due at slot
	got   map[string]time.Time        // arrival per job of slot
	reqs  []*cofferv1.BackupRequested // received, to commit
	all   chan struct{}               // closed when got holds want
	sent  int                         // commits published, over all ticks

	cancel context.CancelFunc // stops the scheduler and the stand-in
	done   chan struct{}      // closed when the scheduler has stopped
}

// close stops the scheduler and the embedded server.
func (e *scaleEnv) close() {
	e.cancel()
	<-e.done
	e.n.Server.Shutdown()
}

// benchScale runs b.N ticks of e.
func benchScale(b *testing.B, e *scaleEnv) {
	dbs := e.dbs
	ctx := b.Context()
	lags := make([]time.Duration, 0, b.N*dbs/60+1)
	var tickCPU, commitCPU time.Duration
	b.ResetTimer()
	for range b.N {
		e.ticks++
		now := e.start.Add(time.Duration(e.ticks) * benchTick)
		// the seconds of the interval this tick covers: (now-15s, now]
		want := 0
		for k := 1; k <= int(benchTick/time.Second); k++ {
			sec := int(now.Sub(e.start)/time.Second) - int(benchTick/time.Second) + k
			want += e.due[sec%900]
		}
		e.mu.Lock()
		e.now, e.slot, e.want = now, now, want
		e.all = make(chan struct{})
		clear(e.got)
		if want == 0 {
			close(e.all)
		}
		arrived := e.all
		e.mu.Unlock()

		c0 := cpuTime(b)
		w0 := time.Now()
		if err := e.s.Tick(ctx, now); err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(benchWait):
			e.mu.Lock()
			k := len(e.got)
			e.mu.Unlock()
			b.Fatalf("tick %s: %d of %d backups arrived", now.Format(time.TimeOnly), k, want)
		}
		tickCPU += cpuTime(b) - c0
		e.mu.Lock()
		for _, t := range e.got {
			lags = append(lags, t.Sub(w0))
		}
		reqs := e.reqs
		e.reqs = nil
		e.mu.Unlock()

		b.StopTimer()
		c1 := cpuTime(b)
		e.commit(b, reqs)
		commitCPU += cpuTime(b) - c1
		b.StartTimer()
	}
	b.StopTimer()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slices.Sort(lags)
	var p50, p99, worst time.Duration
	if len(lags) > 0 {
		p50, p99, worst = lags[len(lags)*50/100], lags[len(lags)*99/100], lags[len(lags)-1]
	}
	perTick := float64(tickCPU.Microseconds()) / 1000 / float64(b.N)
	commitPerTick := float64(commitCPU.Microseconds()) / 1000 / float64(b.N)
	heap := float64(ms.HeapInuse) / (1 << 20)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-lag-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-lag-ms")
	b.ReportMetric(perTick, "cpu-ms/tick")
	b.ReportMetric(commitPerTick, "commit-cpu-ms/tick")
	b.ReportMetric(heap, "heap-MB")
	b.Logf("%d databases, %d ticks of %v (%d backups): dispatch lag p50 %v, p99 %v, max %v; cpu %.1f ms a tick, and %.1f ms handling its commits; heap in use %.1f MB",
		dbs, b.N, benchTick, len(lags), p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond), perTick, commitPerTick, heap)
}

// newScaleEnv seeds dbs databases, starts the stand-in streamer and the
// scheduler, and lets the scheduler read the fleet once.
func newScaleEnv(b *testing.B, dbs int) *scaleEnv {
	// the environment outlives this round of iterations: it is torn down
	// with the process
	n := topologytest.Start(b, bus.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	e := &scaleEnv{cancel: cancel, n: n, dbs: dbs, start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), got: map[string]time.Time{}}
	e.now = e.start
	p := seedBench(b, n.Catalog, e.start, dbs)
	forEachBenchDB(dbs, func(inst, name string) {
		e.due[int(p.NextLogOf(e.start, inst, name).Sub(e.start)/time.Second)%900]++
	})

	// the streamer: note when each request arrives, keep it to commit. It
	// has a connection of its own, as the streamer's process would.
	nc, err := n.Server.Connect(b.Name() + "-streamer")
	if err != nil {
		b.Fatal(err)
	}
	streamer, err := bus.New(nc, bus.Config{FetchWait: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	_, err = streamer.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "bench-streamer", Concurrency: 64},
		func(ctx context.Context, m *bus.Message) error {
			arrived := time.Now()
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			job := req.GetMeta().GetJobId()
			if _, dup := e.got[job]; !dup && req.GetMeta().GetTime().AsTime().Equal(e.slot) {
				e.got[job] = arrived
				e.reqs = append(e.reqs, &req)
				if len(e.got) == e.want {
					close(e.all)
				}
			}
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	e.s, err = scheduler.New(n.Bus, n.Catalog, scheduler.Config{MaxConcurrentPerInstance: 1000, Ticks: make(chan time.Time),
		Now: func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }})
	if err != nil {
		b.Fatal(err)
	}
	e.done = make(chan struct{})
	go func() { defer close(e.done); e.s.Run(ctx) }() //nolint:errcheck // its error ends nothing here
	// the first tick reads the whole fleet; nothing is due at start
	if err := e.s.Tick(ctx, e.start); err != nil {
		b.Fatal(err)
	}
	return e
}

// commit publishes a commit for each request and waits until the
// scheduler has handled them all.
func (e *scaleEnv) commit(b *testing.B, reqs []*cofferv1.BackupRequested) {
	ctx := b.Context()
	for _, req := range reqs {
		ev := committedFor(req, req.GetMeta().GetTime().AsTime())
		if err := e.n.Bus.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId); err != nil {
			b.Fatal(err)
		}
	}
	e.sent += len(reqs)
	waitCommitted(b, e.n)
}

// forEachBenchDB calls fn with the instance and name of each of dbs
// databases, spread over benchInstances instances.
func forEachBenchDB(dbs int, fn func(inst, name string)) {
	for i := range dbs {
		fn(fmt.Sprintf("sql%02d", i%benchInstances), fmt.Sprintf("db%06d", i/benchInstances))
	}
}

// seedBench writes the benchmark's policy and, for each database, its
// inventory record, its protection and a schedule with a full taken and
// its first log due at its first slot after start. The daily full is a
// year away.
func seedBench(b *testing.B, cat *catalog.Catalog, start time.Time, dbs int) *policy.Policy {
	b.Helper()
	ctx := b.Context()
	p := policy.Policy{Name: "bench", Full: policy.Schedule{Frequency: policy.Daily, Hour: 22},
		Log: &policy.LogSchedule{Every: policy.Duration(benchLogEvery), Spread: true}, Retention: policy.Retention{Full: policy.Days(30), Log: policy.Days(30)}}
	js, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cat.Bucket(cofferv1.BucketPolicies).Put(ctx, catalog.Key(p.Name), &cofferv1.PolicyRecord{Name: p.Name, Json: string(js)}); err != nil {
		b.Fatal(err)
	}
	inventory, protected, schedule := cat.Bucket(cofferv1.BucketInventory), cat.Bucket(cofferv1.BucketProtected), cat.Bucket(cofferv1.BucketSchedule)
	keys := make(chan [2]string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for k := range keys {
				inst, name := k[0], k[1]
				key := catalog.Key(inst, name)
				ref := &cofferv1.DatabaseRef{Instance: inst, Database: name}
				for _, put := range []struct {
					bucket *catalog.Bucket
					m      proto.Message
				}{
					{inventory, &cofferv1.DatabaseInfo{Name: name, State: "ONLINE", RecoveryModel: "FULL"}},
					{protected, &cofferv1.ProtectedItem{Database: ref, Policy: p.Name, State: cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED,
						ProtectedAt: timestamppb.New(start.Add(-24 * time.Hour))}},
					{schedule, &cofferv1.ScheduleState{Database: ref, Policy: p.Name, LastFull: "rp-seed-" + key, LastFullCheckpointLsn: "1",
						LastFullAt: timestamppb.New(start.Add(-time.Hour)), NextFull: timestamppb.New(start.AddDate(1, 0, 0)),
						NextLog: timestamppb.New(p.NextLogOf(start, inst, name))}},
				} {
					if _, err := put.bucket.Put(ctx, key, put.m); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}
			}
		})
	}
	forEachBenchDB(dbs, func(inst, name string) { keys <- [2]string{inst, name} })
	close(keys)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return &p
}

// waitCommitted waits until the scheduler has handled every commit
// published, so that no database's log is still pending at the next tick.
func waitCommitted(b *testing.B, n *topologytest.Env) {
	b.Helper()
	ctx := b.Context()
	deadline := time.Now().Add(benchWait)
	for {
		cons, err := n.JS.Consumer(ctx, cofferv1.StreamJobs, "scheduler-jobs")
		if err != nil {
			b.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the scheduler has not handled every commit: %d pending", info.NumPending+uint64(info.NumAckPending))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
