package topologytest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/topology"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// defaultFetchWait is the [bus.Config.FetchWait] that [Start] uses when the
// caller leaves it zero: much shorter than the bus's own default (1s), so a
// stopping or draining subscription returns quickly and tests stay fast.
const defaultFetchWait = 200 * time.Millisecond

// Env is one test's NATS world: an embedded JetStream server with coffer's
// streams and catalog buckets, and a bus connected to it.
type Env struct {
	// Server is the embedded nats-server (in-process connections only).
	Server *bus.Embedded
	// Bus publishes and consumes over the test's connection.
	Bus *bus.Bus
	// JS is the bus's JetStream context, for reading streams directly.
	JS jetstream.JetStream
	// Catalog is the catalog opened by [topology.Setup].
	Catalog *catalog.Catalog
}

// Start starts an embedded JetStream server storing in a fresh t.TempDir(),
// connects to it (the connection is named after the test), builds a bus with
// cfg and sets up coffer's topology (streams and catalog buckets).
//
// When cfg.FetchWait is zero it is set to 200ms rather than the bus's 1s
// default, so subscriptions stop and drain fast in tests; set it explicitly
// to test with another value.
//
// The connection is closed and then the server shut down when the test
// ends. Cleanups the caller registers after Start (stopping services and
// subscriptions) run before those, since t.Cleanup runs last-in first-out.
// Any failure ends the test with t.Fatalf.
func Start(t testing.TB, cfg bus.Config) *Env {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("topologytest: start embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatalf("topologytest: connect to embedded NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	if cfg.FetchWait == 0 {
		cfg.FetchWait = defaultFetchWait
	}
	b, err := bus.New(nc, cfg)
	if err != nil {
		t.Fatalf("topologytest: bus.New: %v", err)
	}
	cat, err := topology.Setup(t.Context(), b, topology.Config{})
	if err != nil {
		t.Fatalf("topologytest: topology.Setup: %v", err)
	}
	return &Env{Server: srv, Bus: b, JS: b.JetStream(), Catalog: cat}
}

// Events reads every event stored on subject in its stream, in
// stream order, decoding each into a message from newMsg. It returns nil
// when there is none, and ends the test with t.Fatalf when the stream
// cannot be read or a payload does not decode. The read uses an ordered
// consumer, so it leaves no durable state behind and does not disturb the
// services' consumers.
func Events[M proto.Message](t testing.TB, e *Env, subject string, newMsg func() M) []M {
	t.Helper()
	ctx := t.Context()
	st, err := e.JS.Stream(ctx, cofferv1.StreamFor(subject))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	n := int(info.State.Subjects[subject])
	if n == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var out []M
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch %s: %v", subject, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			msg := newMsg()
			if err := proto.Unmarshal(m.Data(), msg); err != nil {
				t.Fatalf("decode %s: %v", subject, err)
			}
			out = append(out, msg)
		}
		if got == 0 {
			t.Fatalf("read %d of %d events on %s", len(out), n, subject)
		}
	}
	return out
}
