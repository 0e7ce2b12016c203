package autoprotect_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/autoprotect"
)

// env is one test's world: an embedded NATS with coffer's topology and a
// running auto-protection service.
type env struct {
	t    *testing.T
	nats *topologytest.Env
	bus  *bus.Bus
	cat  *catalog.Catalog
	seq  atomic.Int64
}

// newEnv starts an embedded NATS with coffer's topology and, unless cfg is
// nil, the service.
func newEnv(t *testing.T, cfg *autoprotect.Config) *env {
	t.Helper()
	n := topologytest.Start(t, bus.Config{NakDelay: 100 * time.Millisecond})
	e := &env{t: t, nats: n, bus: n.Bus, cat: n.Catalog}
	if cfg != nil {
		stop := e.run(*cfg)
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	return e
}

// run starts the service and returns the function that stops it and
// returns Run's result.
func (e *env) run(cfg autoprotect.Config) (stop func() error) {
	e.t.Helper()
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	svc, err := autoprotect.New(e.bus, e.cat, cfg)
	if err != nil {
		e.t.Fatalf("autoprotect.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Run(ctx) }()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-stopped:
			case <-time.After(15 * time.Second):
				result = errors.New("Run did not return after its context ended")
			}
		})
		return result
	}
}

func (e *env) publish(subject string, msg proto.Message, id string) {
	e.t.Helper()
	if err := e.bus.Publish(e.t.Context(), subject, msg, id); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

// setAutoprotect publishes an AutoprotectRequested as the gateway would.
func (e *env) setAutoprotect(instance string, enabled bool, policy string) {
	e.t.Helper()
	id := "autoprotect-set-" + strconv.FormatInt(e.seq.Add(1), 10)
	e.publish(cofferv1.SubjectAutoprotectRequested, &cofferv1.AutoprotectRequested{
		Meta:    event.Meta(id, "", time.Now()),
		Setting: &cofferv1.AutoprotectSetting{Instance: instance, Enabled: enabled, Policy: policy},
	}, id)
}

// database is an inventory record as discovery writes it.
func database(name string, id int32) *cofferv1.DatabaseInfo {
	return &cofferv1.DatabaseInfo{Name: name, DatabaseId: id, State: "ONLINE", RecoveryModel: "FULL",
		CreateDate: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, int(id), time.UTC))}
}

// discover stands in for discovery: it publishes DatabaseDiscovered and
// writes the inventory, in that order.
func (e *env) discover(instance string, d *cofferv1.DatabaseInfo) {
	e.t.Helper()
	id := event.ID("database.discovered", instance, d.GetName(), d.GetCreateDate().String())
	e.publish(cofferv1.SubjectDatabaseDiscovered, &cofferv1.DatabaseDiscovered{
		Meta: event.Meta(id, "", time.Now()), Instance: instance, Database: d,
	}, id)
	e.putInventory(instance, d)
}

func (e *env) putInventory(instance string, d *cofferv1.DatabaseInfo) {
	e.t.Helper()
	if _, err := e.cat.Bucket(cofferv1.BucketInventory).Put(e.t.Context(), catalog.Key(instance, d.GetName()), d); err != nil {
		e.t.Fatalf("write inventory: %v", err)
	}
}

// markProtected stands in for the scheduler's record of a protection.
func (e *env) markProtected(instance, name string, state cofferv1.ProtectionState) {
	e.t.Helper()
	it := &cofferv1.ProtectedItem{Database: &cofferv1.DatabaseRef{Instance: instance, Database: name}, Policy: "gold", State: state}
	if _, err := e.cat.Bucket(cofferv1.BucketProtected).Put(e.t.Context(), catalog.Key(instance, name), it); err != nil {
		e.t.Fatalf("write protected: %v", err)
	}
}

func (e *env) requests() []*cofferv1.ProtectionRequested {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectProtectionRequested, func() *cofferv1.ProtectionRequested { return &cofferv1.ProtectionRequested{} })
}

func (e *env) jobFailures() []*cofferv1.JobFailed {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectJobFailed, func() *cofferv1.JobFailed { return &cofferv1.JobFailed{} })
}

// requested returns the databases asked for, as instance/database, in
// order.
func (e *env) requested() []string {
	var out []string
	for _, r := range e.requests() {
		out = append(out, r.GetDatabase().GetInstance()+"/"+r.GetDatabase().GetDatabase())
	}
	return out
}

// scheduler stands in for the scheduler: its own durable consumer answers
// every protection request with answer's result.
func (e *env) scheduler(answer func(ctx context.Context, req *cofferv1.ProtectionRequested) error) {
	e.t.Helper()
	sub, err := e.bus.Consume(e.t.Context(), bus.ConsumerSpec{
		Stream: cofferv1.StreamEvents, Durable: "test-scheduler",
		FilterSubjects: []string{cofferv1.SubjectProtectionRequested},
	}, func(ctx context.Context, m *bus.Message) error {
		var req cofferv1.ProtectionRequested
		if err := m.Decode(&req); err != nil {
			return err
		}
		return answer(ctx, &req)
	})
	if err != nil {
		e.t.Fatalf("consume: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sub.Drain(ctx)
	})
}

// fail answers a request with ProtectionFailed, as the scheduler does.
func (e *env) fail(ctx context.Context, req *cofferv1.ProtectionRequested, reason string) error {
	id := event.ID("protection.failed", req.GetMeta().GetEventId())
	return e.bus.Publish(ctx, cofferv1.SubjectProtectionFailed, &cofferv1.ProtectionFailed{
		Meta: event.Meta(id, req.GetMeta().GetJobId(), time.Now()), Database: req.GetDatabase(), Reason: reason,
		Attempt: req.GetAttempt(), RequestedBy: req.GetRequestedBy(), Policy: req.GetPolicy(),
	}, id)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// steady polls cond for the whole window and fails as soon as it does not
// hold: that nothing more happens.
func steady(t *testing.T, window time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("within %v: %s", window, what())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}
