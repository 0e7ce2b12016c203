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

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	"github.com/cofferhq/coffer/pkg/topology"
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
	bus     *bus.Bus
	js      jetstream.JetStream
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
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("discovery-test")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	spans := telemetrytest.New(t)
	b, err := bus.New(nc, bus.Config{FetchWait: 200 * time.Millisecond, NakDelay: 100 * time.Millisecond,
		TracerProvider: spans.TracerProvider()})
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	cat, err := topology.Setup(t.Context(), b)
	if err != nil {
		t.Fatalf("topology.Setup: %v", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := secret.New(key, "instance-credentials")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, bus: b, js: b.JetStream(), cat: cat, sealer: sealer, logs: &syncBuffer{}, spans: spans,
		ticks: make(chan time.Time), stopped: make(chan error, 1)}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc, err = discovery.New(b, cat, discovery.Config{
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

// register publishes an InstanceAddRequested as the gateway would.
func (e *env) register(name, dsn string) {
	e.t.Helper()
	id := event.ID("instance.add", name, dsn, time.Now().String())
	req := &cofferv1.InstanceAddRequested{Meta: event.Meta(id, "", time.Now()), Name: name,
		SealedDsn: e.sealer.Seal([]byte(dsn), name)}
	if err := e.bus.Publish(e.t.Context(), cofferv1.SubjectInstanceAddRequested, req, id); err != nil {
		e.t.Fatalf("publish InstanceAddRequested: %v", err)
	}
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

// events reads every event stored on subject, in order, decoding each
// into a message from newMsg.
func events[M proto.Message](e *env, subject string, newMsg func() M) []M {
	e.t.Helper()
	ctx := e.t.Context()
	st, err := e.js.Stream(ctx, cofferv1.StreamEvents)
	if err != nil {
		e.t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	n := int(info.State.Subjects[subject])
	if n == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		e.t.Fatalf("ordered consumer: %v", err)
	}
	var out []M
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			e.t.Fatalf("fetch %s: %v", subject, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			msg := newMsg()
			if err := proto.Unmarshal(m.Data(), msg); err != nil {
				e.t.Fatalf("decode %s: %v", subject, err)
			}
			out = append(out, msg)
		}
		if got == 0 {
			e.t.Fatalf("read %d of %d events on %s", len(out), n, subject)
		}
	}
	return out
}

func discovered(e *env) []*cofferv1.DatabaseDiscovered {
	return events(e, cofferv1.SubjectDatabaseDiscovered, func() *cofferv1.DatabaseDiscovered { return &cofferv1.DatabaseDiscovered{} })
}

func changed(e *env) []*cofferv1.DatabaseChanged {
	return events(e, cofferv1.SubjectDatabaseChanged, func() *cofferv1.DatabaseChanged { return &cofferv1.DatabaseChanged{} })
}

func dropped(e *env) []*cofferv1.DatabaseDropped {
	return events(e, cofferv1.SubjectDatabaseDropped, func() *cofferv1.DatabaseDropped { return &cofferv1.DatabaseDropped{} })
}

func healthEvents(e *env) []*cofferv1.InstanceHealthChanged {
	return events(e, cofferv1.SubjectInstanceHealthChanged, func() *cofferv1.InstanceHealthChanged { return &cofferv1.InstanceHealthChanged{} })
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
