package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
)

// serve runs a responder on subject in queue group queue until the test
// ends, and returns its stop.
func (e *env) serve(t *testing.T, subject, queue string, h bus.Responder) (stop func()) {
	t.Helper()
	stop, err := e.bus.Serve(t.Context(), subject, queue, h)
	if err != nil {
		t.Fatalf("Serve(%s): %v", subject, err)
	}
	t.Cleanup(stop)
	return stop
}

// echo answers a StringValue with "echo: " and the value.
func echo(_ context.Context, data []byte) (proto.Message, error) {
	var in wrapperspb.StringValue
	if err := proto.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

// request sends a StringValue and returns the StringValue answer.
func (e *env) request(ctx context.Context, subject, value string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out wrapperspb.StringValue
	err := e.bus.Request(ctx, subject, wrapperspb.String(value), &out)
	return out.GetValue(), err
}

// TestRequestServe: a request is answered by the responder, with the
// requester's span the parent of the responder's; a responder's error
// comes back as the requester's error; an answer of another type than
// the one asked for is refused as malformed.
func TestRequestServe(t *testing.T) {
	rec := telemetrytest.New(t)
	e := newEnv(t, bus.Config{TracerProvider: rec.TracerProvider()})
	handlerSpan := make(chan trace.SpanContext, 1)
	e.serve(t, "test.rpc.echo", "echoes", func(ctx context.Context, data []byte) (proto.Message, error) {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		return echo(ctx, data)
	})

	ctx, root := rec.Tracer().Start(t.Context(), "check instance")
	got, err := e.request(ctx, "test.rpc.echo", "hello")
	root.End()
	if err != nil || got != "echo: hello" {
		t.Fatalf("Request: %q, %v; want %q", got, err, "echo: hello")
	}
	sc := recv(t, "handler", handlerSpan)
	req := rec.Span(t, "request test.rpc.echo")
	srv := rec.Span(t, "serve test.rpc.echo")
	telemetrytest.AssertChildOf(t, req, rec.Span(t, "check instance"))
	telemetrytest.AssertRemoteChildOf(t, srv, req)
	if sc.SpanID() != srv.SpanContext().SpanID() {
		t.Errorf("handler ctx span = %s; want the server span %s", sc.SpanID(), srv.SpanContext().SpanID())
	}
	if got, want := req.SpanKind(), trace.SpanKindClient; got != want {
		t.Errorf("request span kind = %v; want %v", got, want)
	}

	e.serve(t, "test.rpc.fail", "failures", func(context.Context, []byte) (proto.Message, error) {
		return nil, errors.New("instance \"sql1\" is not registered")
	})
	if _, err := e.request(t.Context(), "test.rpc.fail", "x"); err == nil || !strings.Contains(err.Error(), `instance "sql1" is not registered`) {
		t.Errorf("a responder's error: got %v; want it as the requester's error", err)
	}

	e.serve(t, "test.rpc.other", "others", func(context.Context, []byte) (proto.Message, error) {
		return wrapperspb.Int64(7), nil
	})
	if _, err := e.request(t.Context(), "test.rpc.other", "x"); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("an answer of another type: got %v; want ErrMalformed", err)
	}
}

// TestRequestNoResponder: a request nobody serves fails at once with
// ErrNoResponder, not after its deadline; so does one sent after the
// responder stopped.
func TestRequestNoResponder(t *testing.T) {
	e := newEnv(t, bus.Config{})
	start := time.Now()
	if _, err := e.request(t.Context(), "test.rpc.nobody", "x"); !errors.Is(err, bus.ErrNoResponder) {
		t.Fatalf("no responder: got %v; want ErrNoResponder", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("no responder reported after %v; want at once", d)
	}

	stop := e.serve(t, "test.rpc.stopped", "q", echo)
	if _, err := e.request(t.Context(), "test.rpc.stopped", "x"); err != nil {
		t.Fatalf("served: %v", err)
	}
	stop()
	if _, err := e.request(t.Context(), "test.rpc.stopped", "x"); !errors.Is(err, bus.ErrNoResponder) {
		t.Errorf("after stop: got %v; want ErrNoResponder", err)
	}
}

// TestServeQueueGroup: responders sharing a queue group share the
// requests, each answered once; requests do not wait for one another.
func TestServeQueueGroup(t *testing.T) {
	e := newEnv(t, bus.Config{})
	var calls [2]atomic.Int32
	release := make(chan struct{})
	for k := range calls {
		e.serve(t, "test.rpc.shared", "streamers", func(ctx context.Context, data []byte) (proto.Message, error) {
			calls[k].Add(1)
			var in wrapperspb.StringValue
			if err := proto.Unmarshal(data, &in); err != nil {
				return nil, err
			}
			if in.GetValue() == "slow" {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return echo(ctx, data)
		})
	}
	slow := make(chan error, 1)
	go func() {
		_, err := e.request(context.Background(), "test.rpc.shared", "slow")
		slow <- err
	}()
	eventually(t, "the slow request to start", func() bool { return calls[0].Load()+calls[1].Load() == 1 })
	const n = 20
	for i := range n {
		if got, err := e.request(t.Context(), "test.rpc.shared", fmt.Sprint(i)); err != nil || got != fmt.Sprint("echo: ", i) {
			t.Fatalf("request %d behind a slow one: %q, %v", i, got, err)
		}
	}
	close(release)
	if err := recv(t, "the slow request", slow); err != nil {
		t.Errorf("slow request: %v", err)
	}
	if got := calls[0].Load() + calls[1].Load(); got != n+1 {
		t.Errorf("%d handler calls for %d requests; want each request handled once", got, n+1)
	}
}

// TestServeStopCancelsAndWaits: stop cancels a running handler and
// returns only once it has returned; its requester gets the handler's
// error.
func TestServeStopCancelsAndWaits(t *testing.T) {
	e := newEnv(t, bus.Config{})
	started, cancelled, finish := make(chan struct{}), make(chan struct{}), make(chan struct{})
	stop := e.serve(t, "test.rpc.long", "q", func(ctx context.Context, _ []byte) (proto.Message, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		select { // cleanup that stop must wait for
		case <-finish:
		case <-time.After(10 * time.Second):
		}
		return nil, fmt.Errorf("check interrupted: %w", ctx.Err())
	})
	errc := make(chan error, 1)
	go func() {
		_, err := e.request(context.Background(), "test.rpc.long", "x")
		errc <- err
	}()
	recv(t, "the handler to start", started)
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	recv(t, "the handler's context to be cancelled", cancelled)
	select {
	case <-stopped:
		t.Error("stop returned before the running handler did")
	case <-time.After(100 * time.Millisecond):
	}
	close(finish)
	recv(t, "stop to return", stopped)
	if err := recv(t, "the requester's answer", errc); err == nil || !strings.Contains(err.Error(), "check interrupted") {
		t.Errorf("requester of a stopped handler: got %v; want the handler's error", err)
	}
}

func TestServeArguments(t *testing.T) {
	e := newEnv(t, bus.Config{})
	if _, err := e.bus.Serve(t.Context(), "test.rpc.x", "", echo); err == nil {
		t.Error("Serve without a queue group: no error")
	}
	if _, err := e.bus.Serve(t.Context(), "test.rpc.x", "q", nil); err == nil {
		t.Error("Serve without a handler: no error")
	}
}
