package discovery_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/discovery"
)

// The sa password of every simulator here: distinctive, so a leak into a
// log or record is found by a plain search.
const saPassword = "Zq7-Secr3t-Pw!x"

// env is one test's world: an embedded NATS with coffer's topology, a
// running discovery service whose timer the test drives, and the
// service's log output.
type env struct {
	t       *testing.T
	nats    *topologytest.Env
	bus     *bus.Bus
	cat     *catalog.Catalog
	svc     *discovery.Service
	sealer  *secret.Sealer
	logs    *syncBuffer
	spans   *telemetrytest.Recorder
	ticks   chan time.Time
	stopped chan error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	spans := telemetrytest.New(t)
	n := topologytest.Start(t, bus.Config{NakDelay: 100 * time.Millisecond, TracerProvider: spans.TracerProvider()})
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := secret.New(key, "instance-credentials")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, nats: n, bus: n.Bus, cat: n.Catalog, sealer: sealer, logs: &syncBuffer{}, spans: spans,
		ticks: make(chan time.Time), stopped: make(chan error, 1)}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc, err = discovery.New(n.Bus, n.Catalog, discovery.Config{
		MasterKey: key, Ticks: e.ticks, Timeout: 10 * time.Second, Logger: logger, DrainTimeout: 5 * time.Second,
		TracerProvider: spans.TracerProvider(),
	})
	if err != nil {
		t.Fatalf("discovery.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.stopped <- e.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.stopped:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return e
}

// newSim starts a simulated instance with the sa password on loopback and
// returns it with its address.
func newSim(t *testing.T) (*mssqlsim.Instance, string) {
	t.Helper()
	inst := mssqlsim.New(mssqlsim.Config{ServerName: "SIMSQL", SAPassword: saPassword, DefaultPages: 64, DataPath: "/data/"})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst, addr
}

func dsn(user, password, addr string) string {
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(user, password), Host: addr, RawQuery: "encrypt=disable"}
	return u.String()
}

// register publishes an InstanceAddRequested as the gateway would, and
// returns its event id.
func (e *env) register(name, dsn string) string {
	e.t.Helper()
	id := event.ID("instance.add", name, dsn, time.Now().String())
	req := &cofferv1.InstanceAddRequested{Meta: event.Meta(id, "", time.Now()), Name: name,
		SealedDsn: e.sealer.Seal([]byte(dsn), name)}
	if err := e.bus.Publish(e.t.Context(), cofferv1.SubjectInstanceAddRequested, req, id); err != nil {
		e.t.Fatalf("publish InstanceAddRequested: %v", err)
	}
	return id
}

// instance waits until the instance record satisfies ok and returns it.
func (e *env) instance(name string, ok func(*cofferv1.Instance) bool) *cofferv1.Instance {
	e.t.Helper()
	var rec *cofferv1.Instance
	eventually(e.t, 20*time.Second, func() bool {
		var r cofferv1.Instance
		if _, err := e.cat.Bucket(cofferv1.BucketInstances).Get(e.t.Context(), catalog.Key(name), &r); err != nil {
			return false
		}
		rec = &r
		return ok(rec)
	}, func() string { return "instance record " + name + ": " + rec.String() })
	return rec
}

// inventory returns the inventory of one instance by database name.
func (e *env) inventory(instance string) map[string]*cofferv1.DatabaseInfo {
	e.t.Helper()
	out := map[string]*cofferv1.DatabaseInfo{}
	err := e.cat.Bucket(cofferv1.BucketInventory).List(e.t.Context(), catalog.Key(instance),
		func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(key string, m proto.Message) error {
			d := m.(*cofferv1.DatabaseInfo)
			if want := catalog.Key(instance, d.GetName()); key != want {
				e.t.Errorf("inventory key %q; want %q", key, want)
			}
			out[d.GetName()] = d
			return nil
		})
	if err != nil {
		e.t.Fatalf("list inventory: %v", err)
	}
	return out
}

func discovered(e *env) []*cofferv1.DatabaseDiscovered {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectDatabaseDiscovered, func() *cofferv1.DatabaseDiscovered { return &cofferv1.DatabaseDiscovered{} })
}

func changed(e *env) []*cofferv1.DatabaseChanged {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectDatabaseChanged, func() *cofferv1.DatabaseChanged { return &cofferv1.DatabaseChanged{} })
}

func dropped(e *env) []*cofferv1.DatabaseDropped {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectDatabaseDropped, func() *cofferv1.DatabaseDropped { return &cofferv1.DatabaseDropped{} })
}

func healthEvents(e *env) []*cofferv1.InstanceHealthChanged {
	return topologytest.Events(e.t, e.nats, cofferv1.SubjectInstanceHealthChanged, func() *cofferv1.InstanceHealthChanged { return &cofferv1.InstanceHealthChanged{} })
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

// syncBuffer is a bytes.Buffer safe for the service's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
