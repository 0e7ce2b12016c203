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
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/scheduler"
)

const (
	benchInstances = 50
	benchPerInst   = 200
	benchDatabases = benchInstances * benchPerInst
	benchLogEvery  = 15 * time.Minute
	// benchWait bounds every wait of the benchmark, so that a scheduler that
	// stops queueing fails it instead of hanging it.
	benchWait = 2 * time.Minute
)

// BenchmarkSchedulerScale measures the scheduler with 10,000 protected
// databases on 50 instances, all under one policy with a log backup every
// 15 minutes. Each iteration ticks the next log slot, where every database
// is due, and waits until a stand-in streamer has received all 10,000
// backup requests. It reports the dispatch lag of a database (the wall
// time from the start of the tick to its work's arrival at the streamer)
// at the 50th and 99th percentiles, the process CPU time per tick (the
// embedded NATS server, the stand-in streamer and the scheduler's handling
// of the commits included), and the heap in use afterwards.
func BenchmarkSchedulerScale(b *testing.B) {
	n := topologytest.Start(b, bus.Config{})
	ctx := b.Context()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seedBench(b, n.Catalog, start)

	var (
		mu    sync.Mutex
		now   = start
		slot  time.Time                                    // the slot whose work is awaited
		got   = make(map[string]time.Time, benchDatabases) // arrival per job
		all   = make(chan struct{})                        // closed when got is full
		sent  int                                          // commits published, over all slots
		clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	)
	// the streamer and committer, at once: note when each request arrives,
	// then commit it so that the database's next slot can queue again. It
	// has a connection of its own, as the streamer's process would.
	nc, err := n.Server.Connect(b.Name() + "-streamer")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	streamer, err := bus.New(nc, bus.Config{FetchWait: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := streamer.Consume(ctx, bus.ConsumerSpec{Stream: cofferv1.StreamWork, Durable: "bench-streamer", Concurrency: 64},
		func(ctx context.Context, m *bus.Message) error {
			arrived := time.Now()
			var req cofferv1.BackupRequested
			if err := m.Decode(&req); err != nil {
				return err
			}
			job := req.GetMeta().GetJobId()
			at := req.GetMeta().GetTime().AsTime()
			mu.Lock()
			if at.Equal(slot) {
				if _, dup := got[job]; !dup {
					got[job] = arrived
					if len(got) == benchDatabases {
						close(all)
					}
				}
			}
			mu.Unlock()
			rp := &cofferv1.RecoveryPoint{Id: event.RecoveryPointID(job), Database: req.GetDatabase(), JobId: job,
				Backup: &cofferv1.BackupMetadata{Type: req.GetType(), BackupFinish: timestamppb.New(at), CheckpointLsn: "1"}}
			ev := &cofferv1.RecoveryPointCommitted{Meta: event.Meta(event.ID("committed", job), job, at), RecoveryPoint: rp}
			if err := streamer.Publish(ctx, cofferv1.SubjectRecoveryPointCommitted, ev, ev.Meta.EventId); err != nil {
				return err
			}
			mu.Lock()
			sent++
			mu.Unlock()
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sub.Stop)

	s, err := scheduler.New(n.Bus, n.Catalog, scheduler.Config{MaxConcurrentPerInstance: 1000, Now: clock, Ticks: make(chan time.Time)})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	b.Cleanup(func() { cancel(); <-done })

	lags := make([]time.Duration, 0, b.N*benchDatabases)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		mu.Lock()
		now = start.Add(time.Duration(i+1) * benchLogEvery)
		slot, all = now, make(chan struct{})
		clear(got)
		arrived := all
		mu.Unlock()

		w0 := time.Now()
		if err := s.Tick(ctx, slot); err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(benchWait):
			mu.Lock()
			k := len(got)
			mu.Unlock()
			b.Fatalf("slot %s: %d of %d backups arrived", slot.Format(time.TimeOnly), k, benchDatabases)
		}
		mu.Lock()
		for _, t := range got {
			lags = append(lags, t.Sub(w0))
		}
		mu.Unlock()

		b.StopTimer()
		waitCommitted(b, n, &mu, &sent, (i+1)*benchDatabases)
		b.StartTimer()
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slices.Sort(lags)
	p50, p99 := lags[len(lags)*50/100], lags[len(lags)*99/100]
	perTick := float64(cpu.Microseconds()) / 1000 / float64(b.N)
	heap := float64(ms.HeapInuse) / (1 << 20)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-lag-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-lag-ms")
	b.ReportMetric(perTick, "cpu-ms/tick")
	b.ReportMetric(heap, "heap-MB")
	b.Logf("%d databases, %d ticks: dispatch lag p50 %v, p99 %v, max %v; cpu %.0f ms/tick; heap in use %.1f MB",
		benchDatabases, b.N, p50.Round(time.Millisecond), p99.Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), perTick, heap)
}

// seedBench writes the benchmark's policy and, for each database, its
// inventory record, its protection and a schedule with a full taken and the
// first log due a slot after start. The daily full is a year away.
func seedBench(b *testing.B, cat *catalog.Catalog, start time.Time) {
	b.Helper()
	ctx := b.Context()
	p := policy.Policy{Name: "bench", Full: policy.Schedule{Frequency: policy.Daily, Hour: 22},
		Log: &policy.LogSchedule{Every: policy.Duration(benchLogEvery)}, Retention: policy.Retention{Full: policy.Days(30), Log: policy.Days(30)}}
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
						NextLog: timestamppb.New(start.Add(benchLogEvery))}},
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
	for i := range benchInstances {
		for j := range benchPerInst {
			keys <- [2]string{fmt.Sprintf("sql%02d", i), fmt.Sprintf("db%03d", j)}
		}
	}
	close(keys)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// waitCommitted waits until the stand-in streamer has published want
// commits in all and the scheduler has handled every one of them, so that
// no database's log is still pending at the next tick.
func waitCommitted(b *testing.B, n *topologytest.Env, mu *sync.Mutex, sent *int, want int) {
	b.Helper()
	ctx := b.Context()
	deadline := time.Now().Add(benchWait)
	for {
		mu.Lock()
		k := *sent
		mu.Unlock()
		if k >= want {
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
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d commits published; the scheduler has not handled them all", k, want)
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
