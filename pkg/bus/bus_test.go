package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
)

// env is one embedded server and a bus connected to it.
type env struct {
	srv *bus.Embedded
	nc  *nats.Conn
	bus *bus.Bus
	js  jetstream.JetStream
}

func newEnv(t *testing.T, cfg bus.Config) *env {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: 0})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if cfg.FetchWait == 0 {
		// Every subscription's Drain waits for its last pull to run out.
		cfg.FetchWait = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := bus.New(nc, cfg)
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	return &env{srv: srv, nc: nc, bus: b, js: b.JetStream()}
}

func (e *env) stream(t *testing.T, name string, retention bus.Retention) string {
	t.Helper()
	subject := "test." + name + ".>"
	if err := e.bus.EnsureStream(t.Context(), bus.StreamSpec{
		Name:      name,
		Subjects:  []string{subject},
		Retention: retention,
		Storage:   bus.MemoryStorage,
	}); err != nil {
		t.Fatalf("EnsureStream(%s): %v", name, err)
	}
	return "test." + name
}

func (e *env) consume(t *testing.T, spec bus.ConsumerSpec, h bus.Handler) *bus.Subscription {
	t.Helper()
	sub, err := e.bus.Consume(t.Context(), spec, h)
	if err != nil {
		t.Fatalf("Consume(%s/%s): %v", spec.Stream, spec.Durable, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sub.Drain(ctx); err != nil {
			t.Errorf("Drain: %v", err)
		}
	})
	return sub
}

func (e *env) consumerInfo(t *testing.T, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(t.Context(), stream, durable)
	if err != nil {
		t.Fatalf("Consumer(%s, %s): %v", stream, durable, err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// settled waits until the consumer has nothing pending, unacknowledged or
// waiting for redelivery: the server will deliver nothing more.
func (e *env) settled(t *testing.T, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	eventually(t, "consumer settled", func() bool {
		info = e.consumerInfo(t, stream, durable)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
	return info
}

func (e *env) publish(t *testing.T, subject, value, id string) {
	t.Helper()
	if err := e.bus.Publish(t.Context(), subject, wrapperspb.String(value), id); err != nil {
		t.Fatalf("Publish(%s, %s): %v", subject, id, err)
	}
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// recv waits for a value on ch, failing the test after 10s.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestStartEmbedded(t *testing.T) {
	t.Run("in-process only", func(t *testing.T) {
		srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: 0})
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		defer srv.Shutdown()
		if got := srv.ClientURL(); got != "" {
			t.Errorf("ClientURL() = %q; want \"\" without a listener", got)
		}
		nc, err := srv.Connect("inproc")
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.AccountInfo(t.Context()); err != nil {
			t.Errorf("AccountInfo: %v; want JetStream enabled", err)
		}
	})
	t.Run("random port", func(t *testing.T) {
		srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: -1})
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		defer srv.Shutdown()
		url := srv.ClientURL()
		if url == "" {
			t.Fatal("ClientURL() is empty; want a nats:// URL")
		}
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatalf("nats.Connect(%s): %v", url, err)
		}
		nc.Close()
	})
	t.Run("invalid options", func(t *testing.T) {
		if _, err := bus.StartEmbedded(bus.Options{Port: -2}); err == nil {
			t.Error("StartEmbedded without store dir and with port -2: got nil error")
		}
	})
}

func TestEnsureStreamIdempotent(t *testing.T) {
	e := newEnv(t, bus.Config{})
	spec := bus.StreamSpec{
		Name:       "EVENTS",
		Subjects:   []string{"test.events.>"},
		MaxAge:     time.Hour,
		Duplicates: time.Minute,
	}
	for i := range 3 {
		if err := e.bus.EnsureStream(t.Context(), spec); err != nil {
			t.Fatalf("EnsureStream #%d: %v", i+1, err)
		}
	}
	names := e.js.StreamNames(t.Context())
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
	if want := []string{"EVENTS"}; !slices.Equal(got, want) {
		t.Errorf("streams = %v; want %v", got, want)
	}

	spec.MaxAge = 2 * time.Hour
	spec.Subjects = append(spec.Subjects, "test.more.>")
	if err := e.bus.EnsureStream(t.Context(), spec); err != nil {
		t.Fatalf("EnsureStream with changed spec: %v", err)
	}
	s, err := e.js.Stream(t.Context(), "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != 2*time.Hour || len(cfg.Subjects) != 2 || cfg.Duplicates != time.Minute {
		t.Errorf("updated stream: max age %v, subjects %v, duplicates %v; want 2h, 2 subjects, 1m",
			cfg.MaxAge, cfg.Subjects, cfg.Duplicates)
	}
	if cfg.Retention != jetstream.LimitsPolicy || cfg.Storage != jetstream.FileStorage {
		t.Errorf("retention %v, storage %v; want limits, file", cfg.Retention, cfg.Storage)
	}

	if err := e.bus.EnsureStream(t.Context(), bus.StreamSpec{Name: "X"}); err == nil {
		t.Error("EnsureStream without subjects: got nil error")
	}
}

func TestPublishDeduplicates(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "DEDUP", bus.Limits)

	subject += ".job"
	e.publish(t, subject, "first", "job-1")
	e.publish(t, subject, "second attempt, same key", "job-1")
	e.publish(t, subject, "other", "job-2")

	s, err := e.js.Stream(t.Context(), "DEDUP")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.State.Msgs, uint64(2); got != want {
		t.Errorf("stream holds %d messages; want %d", got, want)
	}
	raw, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := raw.Header.Get("Nats-Msg-Id"), "job-1"; got != want {
		t.Errorf("Nats-Msg-Id = %q; want %q", got, want)
	}
	if got, want := raw.Header.Get("Content-Type"), "application/protobuf; proto=google.protobuf.StringValue"; got != want {
		t.Errorf("Content-Type = %q; want %q", got, want)
	}
	var v wrapperspb.StringValue
	if err := proto.Unmarshal(raw.Data, &v); err != nil || v.Value != "first" {
		t.Errorf("stored payload = %q (err %v); want %q", v.Value, err, "first")
	}

	if err := e.bus.Publish(t.Context(), subject, wrapperspb.String("x"), ""); err == nil {
		t.Error("Publish with empty id: got nil error")
	}
}

// TestPublishAll: a batch larger than one window is stored in order, once
// each, duplicates of earlier messages are dropped, and a message no
// stream captures, or without an id, fails alone.
func TestPublishAll(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "BATCH", bus.Limits) + ".x"
	e.publish(t, subject, "before", "m-0")
	var msgs []bus.Outgoing
	for i := range 2500 {
		msgs = append(msgs, bus.Outgoing{Subject: subject, Msg: wrapperspb.String(fmt.Sprint(i)), ID: fmt.Sprintf("m-%d", i)})
	}
	msgs = append(msgs, bus.Outgoing{Subject: "nobody.listens", Msg: wrapperspb.String("lost"), ID: "lost-1"},
		bus.Outgoing{Subject: subject, Msg: wrapperspb.String("no id")})
	errs := e.bus.PublishAll(t.Context(), msgs)
	for i, err := range errs[:2500] {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if !errors.Is(errs[2500], bus.ErrNoStream) {
		t.Errorf("a message no stream captures: %v, want ErrNoStream", errs[2500])
	}
	if errs[2501] == nil {
		t.Error("a message without an id: no error")
	}
	s, err := e.js.Stream(t.Context(), "BATCH")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// m-0 was stored before: its copy in the batch is a duplicate
	if got, want := info.State.Msgs, uint64(2500); got != want {
		t.Errorf("stream holds %d messages; want %d", got, want)
	}
	for _, seq := range []uint64{2, 1000, 2500} {
		raw, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var v wrapperspb.StringValue
		if err := proto.Unmarshal(raw.Data, &v); err != nil || v.Value != fmt.Sprint(seq-1) {
			t.Errorf("message %d holds %q (err %v); want %q: out of order", seq, v.Value, err, fmt.Sprint(seq-1))
		}
	}
}

func TestPublishNoStream(t *testing.T) {
	e := newEnv(t, bus.Config{})
	err := e.bus.Publish(t.Context(), "nobody.listens", wrapperspb.String("x"), "id-1")
	if !errors.Is(err, bus.ErrNoStream) {
		t.Errorf("Publish to uncaptured subject: err = %v; want ErrNoStream", err)
	}
}

func TestConsumeAcksOnSuccess(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "ACK", bus.Limits)
	e.publish(t, subject+".a", "hello", "msg-1")

	type seen struct {
		value, id, subject string
		delivered          uint64
	}
	got := make(chan seen, 10)
	e.consume(t, bus.ConsumerSpec{Stream: "ACK", Durable: "acker"}, func(ctx context.Context, m *bus.Message) error {
		var v wrapperspb.StringValue
		if err := m.Decode(&v); err != nil {
			return err
		}
		got <- seen{v.Value, m.ID(), m.Subject, m.Delivered()}
		return nil
	})
	want := seen{"hello", "msg-1", subject + ".a", 1}
	if s := recv(t, "delivery", got); s != want {
		t.Errorf("handler saw %+v; want %+v", s, want)
	}
	info := e.settled(t, "ACK", "acker")
	if info.AckFloor.Stream != 1 {
		t.Errorf("ack floor = %d; want 1", info.AckFloor.Stream)
	}
	if len(got) != 0 {
		t.Errorf("%d extra deliveries after ack", len(got))
	}
}

func TestConsumeNakWithDelayThenSuccess(t *testing.T) {
	var poisoned atomic.Int32
	e := newEnv(t, bus.Config{OnPoison: func(context.Context, *bus.Message, error) { poisoned.Add(1) }})
	subject := e.stream(t, "RETRY", bus.Limits)
	backoff := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}

	type attempt struct {
		delivered uint64
		at        time.Time
	}
	var (
		mu       sync.Mutex
		attempts []attempt
	)
	succeeded := make(chan struct{})
	e.consume(t, bus.ConsumerSpec{Stream: "RETRY", Durable: "retrier", Backoff: backoff}, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, attempt{m.Delivered(), time.Now()})
		if len(attempts) < 3 {
			return errors.New("transient: instance unreachable")
		}
		close(succeeded)
		return nil
	})
	e.publish(t, subject+".x", "work", "retry-1")
	recv(t, "third attempt", succeeded)
	e.settled(t, "RETRY", "retrier")

	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("handler ran %d times; want 3", len(attempts))
	}
	for i, a := range attempts {
		if a.delivered != uint64(i+1) {
			t.Errorf("attempt %d: Delivered() = %d; want %d", i+1, a.delivered, i+1)
		}
		if i > 0 {
			if gap := a.at.Sub(attempts[i-1].at); gap < backoff[i-1] {
				t.Errorf("attempt %d came %v after the previous one; want at least %v", i+1, gap, backoff[i-1])
			}
		}
	}
	if n := poisoned.Load(); n != 0 {
		t.Errorf("OnPoison called %d times; want 0", n)
	}
}

type poisonCall struct {
	id  string
	err error
}

func poisonRecorder() (func(context.Context, *bus.Message, error), <-chan poisonCall, *atomic.Int32) {
	ch := make(chan poisonCall, 10)
	var n atomic.Int32
	return func(_ context.Context, m *bus.Message, err error) {
		n.Add(1)
		ch <- poisonCall{m.ID(), err}
	}, ch, &n
}

func TestConsumePermanentTerminates(t *testing.T) {
	onPoison, calls, n := poisonRecorder()
	e := newEnv(t, bus.Config{OnPoison: onPoison})
	subject := e.stream(t, "PERM", bus.Limits)
	errBadPolicy := errors.New("policy refers to a deleted vault")

	var handled atomic.Int32
	e.consume(t, bus.ConsumerSpec{Stream: "PERM", Durable: "perm"}, func(ctx context.Context, m *bus.Message) error {
		handled.Add(1)
		return bus.Permanent(fmt.Errorf("protect db: %w", errBadPolicy))
	})
	e.publish(t, subject+".x", "work", "perm-1")

	call := recv(t, "OnPoison", calls)
	if call.id != "perm-1" || !errors.Is(call.err, errBadPolicy) {
		t.Errorf("OnPoison(%q, %v); want (perm-1, error wrapping %v)", call.id, call.err, errBadPolicy)
	}
	e.settled(t, "PERM", "perm")
	if got := handled.Load(); got != 1 {
		t.Errorf("handler ran %d times; want 1", got)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("OnPoison called %d times; want 1", got)
	}
}

func TestConsumeMalformedTerminates(t *testing.T) {
	onPoison, calls, _ := poisonRecorder()
	e := newEnv(t, bus.Config{OnPoison: onPoison})
	subject := e.stream(t, "MALFORMED", bus.Limits)

	var handled atomic.Int32
	e.consume(t, bus.ConsumerSpec{Stream: "MALFORMED", Durable: "m"}, func(ctx context.Context, m *bus.Message) error {
		handled.Add(1)
		var v wrapperspb.StringValue
		if err := m.Decode(&v); err != nil {
			return fmt.Errorf("handle: %w", err)
		}
		return nil
	})

	// Garbage that claims to be a StringValue.
	bad := &nats.Msg{Subject: subject + ".garbage", Data: []byte{0xff, 0xff, 0xff}, Header: nats.Header{}}
	bad.Header.Set("Content-Type", "application/protobuf; proto=google.protobuf.StringValue")
	if _, err := e.js.PublishMsg(t.Context(), bad, jetstream.WithMsgID("garbage-1")); err != nil {
		t.Fatal(err)
	}
	// A well-formed message of another type.
	if err := e.bus.Publish(t.Context(), subject+".wrongtype", wrapperspb.Int64(7), "wrongtype-1"); err != nil {
		t.Fatal(err)
	}

	got := map[string]error{}
	for range 2 {
		c := recv(t, "OnPoison", calls)
		got[c.id] = c.err
	}
	for _, id := range []string{"garbage-1", "wrongtype-1"} {
		if err, ok := got[id]; !ok || !errors.Is(err, bus.ErrMalformed) {
			t.Errorf("OnPoison for %s: err = %v (called %v); want ErrMalformed", id, err, ok)
		}
	}
	e.settled(t, "MALFORMED", "m")
	if got := handled.Load(); got != 2 {
		t.Errorf("handler ran %d times; want 2", got)
	}
}

func TestConsumeMaxDeliverIsPoison(t *testing.T) {
	onPoison, calls, n := poisonRecorder()
	e := newEnv(t, bus.Config{OnPoison: onPoison})
	subject := e.stream(t, "MAXDEL", bus.Limits)
	errDown := errors.New("instance down")

	var (
		mu        sync.Mutex
		delivered []uint64
	)
	e.consume(t, bus.ConsumerSpec{
		Stream: "MAXDEL", Durable: "md", MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond},
	}, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		delivered = append(delivered, m.Delivered())
		mu.Unlock()
		return errDown
	})
	e.publish(t, subject+".x", "work", "md-1")

	call := recv(t, "OnPoison", calls)
	if call.id != "md-1" || !errors.Is(call.err, errDown) {
		t.Errorf("OnPoison(%q, %v); want (md-1, error wrapping %v)", call.id, call.err, errDown)
	}
	e.settled(t, "MAXDEL", "md")
	mu.Lock()
	defer mu.Unlock()
	if want := []uint64{1, 2, 3}; !slices.Equal(delivered, want) {
		t.Errorf("deliveries = %v; want %v", delivered, want)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("OnPoison called %d times; want 1", got)
	}
}

func TestConsumeRecoversPanic(t *testing.T) {
	e := newEnv(t, bus.Config{NakDelay: 10 * time.Millisecond})
	subject := e.stream(t, "PANIC", bus.Limits)
	done := make(chan uint64, 1)
	e.consume(t, bus.ConsumerSpec{Stream: "PANIC", Durable: "p"}, func(ctx context.Context, m *bus.Message) error {
		if m.Delivered() == 1 {
			panic("nil map in handler")
		}
		done <- m.Delivered()
		return nil
	})
	e.publish(t, subject+".x", "work", "p-1")
	if got := recv(t, "redelivery after panic", done); got != 2 {
		t.Errorf("succeeded on delivery %d; want 2", got)
	}
	e.settled(t, "PANIC", "p")
}

func TestTracePropagation(t *testing.T) {
	rec := telemetrytest.New(t)
	e := newEnv(t, bus.Config{TracerProvider: rec.TracerProvider()})
	subject := e.stream(t, "TRACE", bus.Limits)

	handlerSpan := make(chan trace.SpanContext, 1)
	e.consume(t, bus.ConsumerSpec{Stream: "TRACE", Durable: "tr"}, func(ctx context.Context, m *bus.Message) error {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		return nil
	})

	ctx, root := rec.Tracer().Start(t.Context(), "schedule backup")
	if err := e.bus.Publish(ctx, subject+".job", wrapperspb.String("job"), "trace-1"); err != nil {
		t.Fatal(err)
	}
	root.End()
	sc := recv(t, "handler", handlerSpan)

	rootSpan := rec.Span(t, "schedule backup")
	pub := rec.Span(t, "publish "+subject+".job")
	proc := rec.Span(t, "process "+subject+".job")
	telemetrytest.AssertRoot(t, rootSpan)
	telemetrytest.AssertChildOf(t, pub, rootSpan)
	telemetrytest.AssertRemoteChildOf(t, proc, pub)
	if sc.SpanID() != proc.SpanContext().SpanID() {
		t.Errorf("handler ctx span = %s; want the consumer span %s", sc.SpanID(), proc.SpanContext().SpanID())
	}
	if got, want := pub.SpanKind(), trace.SpanKindProducer; got != want {
		t.Errorf("publish span kind = %v; want %v", got, want)
	}
	if got, want := proc.SpanKind(), trace.SpanKindConsumer; got != want {
		t.Errorf("process span kind = %v; want %v", got, want)
	}
}

func TestWorkQueueSharedAcrossConsumers(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "WORK", bus.WorkQueue)
	const workers, jobs = 3, 30

	var (
		mu       sync.Mutex
		handled  = map[string]int{}
		byWorker [workers]int
	)
	// The first message each worker takes waits until all three workers
	// hold one: that proves the work is spread, without timing.
	var barrier sync.WaitGroup
	barrier.Add(workers)
	allBusy := make(chan struct{})
	go func() { barrier.Wait(); close(allBusy) }()

	for w := range workers {
		first := true
		e.consume(t, bus.ConsumerSpec{Stream: "WORK", Durable: "streamer", Concurrency: 1},
			func(ctx context.Context, m *bus.Message) error {
				if first {
					first = false
					barrier.Done()
					select {
					case <-allBusy:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				mu.Lock()
				handled[m.ID()]++
				byWorker[w]++
				mu.Unlock()
				return nil
			})
	}
	for i := range jobs {
		e.publish(t, fmt.Sprintf("%s.job.%d", subject, i), "backup", fmt.Sprintf("job-%d", i))
	}
	eventually(t, "all jobs handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == jobs
	})
	e.settled(t, "WORK", "streamer")

	mu.Lock()
	defer mu.Unlock()
	for id, n := range handled {
		if n != 1 {
			t.Errorf("%s handled %d times; want 1", id, n)
		}
	}
	for w, n := range byWorker {
		if n == 0 {
			t.Errorf("worker %d handled nothing; want a share", w)
		}
	}
	t.Logf("jobs per worker: %v", byWorker)
	s, err := e.js.Stream(t.Context(), "WORK")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("work queue holds %d messages after all acks; want 0", info.State.Msgs)
	}
}

func TestInProgressPreventsRedelivery(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "SLOW", bus.WorkQueue)
	const ackWait = 300 * time.Millisecond

	var calls atomic.Int32
	done := make(chan uint64, 2)
	handler := func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		// The work itself takes four ack waits.
		select {
		case <-time.After(4 * ackWait):
		case <-ctx.Done():
			return ctx.Err()
		}
		done <- m.Delivered()
		return nil
	}
	// Two workers: a redelivery would go to the idle one.
	spec := bus.ConsumerSpec{Stream: "SLOW", Durable: "slow", AckWait: ackWait}
	e.consume(t, spec, handler)
	e.consume(t, spec, handler)
	e.publish(t, subject+".x", "big database", "slow-1")

	if got := recv(t, "slow handler", done); got != 1 {
		t.Errorf("handled on delivery %d; want 1", got)
	}
	info := e.settled(t, "SLOW", "slow")
	if got := calls.Load(); got != 1 {
		t.Errorf("handler started %d times; want 1", got)
	}
	if info.NumRedelivered != 0 || info.Delivered.Consumer != 1 {
		t.Errorf("consumer delivered %d (redelivered %d); want 1 (0)", info.Delivered.Consumer, info.NumRedelivered)
	}
}

func TestDrainWaitsForInFlightHandler(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "DRAIN", bus.Limits)

	started := make(chan struct{})
	release := make(chan struct{})
	var finished, cancelled atomic.Bool
	sub, err := e.bus.Consume(t.Context(), bus.ConsumerSpec{Stream: "DRAIN", Durable: "d"}, func(ctx context.Context, m *bus.Message) error {
		close(started)
		<-release
		cancelled.Store(ctx.Err() != nil)
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, subject+".x", "work", "drain-1")
	recv(t, "handler start", started)

	drained := make(chan error, 1)
	go func() { drained <- sub.Drain(t.Context()) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a handler was running", err)
	default:
	}
	close(release)
	if err := recv(t, "Drain", drained); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !finished.Load() {
		t.Error("Drain returned before the handler finished")
	}
	if cancelled.Load() {
		t.Error("handler context was cancelled by Drain; want it live until the handler returns")
	}
	// Drain waited for the ack, so the server already has it.
	if info := e.consumerInfo(t, "DRAIN", "d"); info.NumAckPending != 0 || info.AckFloor.Stream != 1 {
		t.Errorf("after Drain: ack pending %d, ack floor %d; want 0, 1", info.NumAckPending, info.AckFloor.Stream)
	}
	select {
	case <-sub.Done():
	default:
		t.Error("Done() not closed after Drain")
	}
}

func TestDrainTimeoutStopsHandlers(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "STOP", bus.WorkQueue)

	started := make(chan struct{}, 1)
	sub, err := e.bus.Consume(t.Context(), bus.ConsumerSpec{Stream: "STOP", Durable: "s"}, func(ctx context.Context, m *bus.Message) error {
		started <- struct{}{}
		<-ctx.Done() // a handler that only stops when told to
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, subject+".x", "work", "stop-1")
	recv(t, "handler start", started)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := sub.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain past its deadline: err = %v; want DeadlineExceeded", err)
	}
	recv(t, "subscription done", sub.Done())

	// The interrupted message was given back at once, not after AckWait
	// (30s by default): another worker gets it promptly.
	got := make(chan string, 1)
	e.consume(t, bus.ConsumerSpec{Stream: "STOP", Durable: "s"}, func(ctx context.Context, m *bus.Message) error {
		got <- m.ID()
		return nil
	})
	if id := recv(t, "redelivery to another worker", got); id != "stop-1" {
		t.Errorf("redelivered %q; want stop-1", id)
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"stream without name", bus.StreamSpec{Subjects: []string{"a"}}.Validate()},
		{"stream with bad retention", bus.StreamSpec{Name: "A", Subjects: []string{"a"}, Retention: 9}.Validate()},
		{"consumer without durable", bus.ConsumerSpec{Stream: "A"}.Validate()},
		{"consumer with tiny ack wait", bus.ConsumerSpec{Stream: "A", Durable: "d", AckWait: time.Millisecond}.Validate()},
		{"consumer with negative backoff", bus.ConsumerSpec{Stream: "A", Durable: "d", Backoff: []time.Duration{-1}}.Validate()},
		{"config with negative nak delay", bus.Config{NakDelay: -time.Second}.Validate()},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: Validate() = nil; want an error", tt.name)
		}
	}
	if err := (bus.ConsumerSpec{Stream: "A", Durable: "d"}).Validate(); err != nil {
		t.Errorf("minimal consumer spec: Validate() = %v; want nil", err)
	}
	if err := (bus.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: Validate() = %v; want nil", err)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("boom")
	if bus.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	p := fmt.Errorf("wrapped: %w", bus.Permanent(base))
	if !bus.IsPermanent(p) || !errors.Is(p, base) {
		t.Errorf("IsPermanent(%v) = %v, errors.Is(base) = %v; want true, true", p, bus.IsPermanent(p), errors.Is(p, base))
	}
	if bus.IsPermanent(base) {
		t.Error("IsPermanent(plain error) = true")
	}
	if !bus.IsPermanent(fmt.Errorf("x: %w", bus.ErrMalformed)) {
		t.Error("IsPermanent(ErrMalformed) = false")
	}
}

func TestDrainedSubscriptionLeavesNewWork(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "SCALE", bus.WorkQueue)
	spec := bus.ConsumerSpec{Stream: "SCALE", Durable: "w"} // AckWait 30s

	// An idle worker with a pull request waiting on the server goes away.
	idle, err := e.bus.Consume(t.Context(), spec, func(ctx context.Context, m *bus.Message) error {
		t.Errorf("drained worker got %s", m.ID())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a waiting pull request", func() bool {
		return e.consumerInfo(t, "SCALE", "w").NumWaiting > 0
	})
	if err := idle.Drain(t.Context()); err != nil {
		t.Fatalf("Drain: %v", err)
	}

	// Work published afterwards must reach the remaining worker now, not
	// after the abandoned pull's message times out.
	e.publish(t, subject+".x", "work", "scale-1")
	got := make(chan string, 1)
	e.consume(t, spec, func(ctx context.Context, m *bus.Message) error {
		got <- m.ID()
		return nil
	})
	if id := recv(t, "delivery to the remaining worker", got); id != "scale-1" {
		t.Errorf("got %q; want scale-1", id)
	}
}

// TestStoppedHandlerFailureIsNotLost: a handler that fails because its
// subscription stopped hands the message back, and the next subscription
// of the durable gets it — it is not naked into its MaxDeliver and dropped.
func TestStoppedHandlerFailureIsNotLost(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "STOPFAIL", bus.WorkQueue)
	spec := bus.ConsumerSpec{Stream: "STOPFAIL", Durable: "w", MaxDeliver: 3, AckWait: 30 * time.Second}
	started := make(chan struct{}, 1)
	first, err := e.bus.Consume(t.Context(), spec, func(ctx context.Context, m *bus.Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, subject+".job", "work", "job-1")
	recv(t, "handler start", started)
	first.Stop()
	<-first.Done()

	got := make(chan string, 1)
	e.consume(t, spec, func(ctx context.Context, m *bus.Message) error {
		var v wrapperspb.StringValue
		if err := m.Decode(&v); err != nil {
			return err
		}
		got <- v.GetValue()
		return nil
	})
	if v := recv(t, "redelivery to the next subscription", got); v != "work" {
		t.Fatalf("got %q, want the stopped job", v)
	}
}

// TestExhaustedDeliveriesArePoison: a worker that dies mid-handler on the
// last allowed delivery settles nothing, so no handler reports the
// failure; the max-deliveries advisory does, through OnPoison.
func TestExhaustedDeliveriesArePoison(t *testing.T) {
	onPoison, calls, n := poisonRecorder()
	e := newEnv(t, bus.Config{OnPoison: onPoison})
	subject := e.stream(t, "CRASH", bus.WorkQueue)
	stop, err := e.bus.WatchExhausted("CRASH", "work")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	// the worker, in a process of its own
	nc, err := e.srv.Connect("worker")
	if err != nil {
		t.Fatal(err)
	}
	worker, err := bus.New(nc, bus.Config{FetchWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	if _, err := worker.Consume(t.Context(), bus.ConsumerSpec{Stream: "CRASH", Durable: "work", MaxDeliver: 1, AckWait: 300 * time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			started <- struct{}{}
			<-release
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, subject+".job", "back up Sales", "crash-1")
	recv(t, "the worker to start", started)
	nc.Close() // the worker's process dies

	call := recv(t, "OnPoison", calls)
	if call.id != "crash-1" || call.err == nil || !strings.Contains(call.err.Error(), "1 deliveries") {
		t.Errorf("OnPoison(%q, %v); want crash-1, saying the deliveries ran out", call.id, call.err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("OnPoison called %d times; want 1", got)
	}
}
