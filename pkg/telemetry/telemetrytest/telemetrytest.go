package telemetrytest

import (
	"context"
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Recorder is an in-memory tracer provider for one test.
type Recorder struct {
	provider *sdktrace.TracerProvider
	spans    *tracetest.SpanRecorder
}

// New returns a Recorder whose provider samples every span. The provider is
// shut down when the test ends.
func New(t testing.TB) *Recorder {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sr),
	)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &Recorder{provider: tp, spans: sr}
}

// TracerProvider is the provider to inject into the code under test.
func (r *Recorder) TracerProvider() trace.TracerProvider { return r.provider }

// Tracer is a tracer from the recorder's provider, for a test's own spans.
func (r *Recorder) Tracer() trace.Tracer {
	return r.provider.Tracer("github.com/cofferhq/coffer/pkg/telemetry/telemetrytest")
}

// Ended returns the spans that have ended so far, in the order they ended.
func (r *Recorder) Ended() []sdktrace.ReadOnlySpan { return r.spans.Ended() }

// Named returns the ended spans with the given name, in the order they ended.
func (r *Recorder) Named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Span returns the one ended span with the given name, waiting up to
// 10 seconds for it to end (spans of asynchronous work end after the test
// observes the work's effect). It fails the test if no such span ends, or if
// more than one has.
func (r *Recorder) Span(t testing.TB, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		got := r.Named(name)
		switch {
		case len(got) == 1:
			return got[0]
		case len(got) > 1:
			t.Fatalf("%d spans named %q ended; want 1", len(got), name)
		case time.Now().After(deadline):
			t.Fatalf("no span named %q ended within 10s; ended: %v", name, names(r.Ended()))
		}
		<-tick.C
	}
}

// AssertChildOf fails the test unless child's parent is parent: same trace,
// and child's parent span id is parent's span id.
func AssertChildOf(t testing.TB, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if got, want := child.SpanContext().TraceID(), parent.SpanContext().TraceID(); got != want {
		t.Errorf("span %q trace id = %s; want %s (trace of %q)", child.Name(), got, want, parent.Name())
	}
	if got, want := child.Parent().SpanID(), parent.SpanContext().SpanID(); got != want {
		t.Errorf("span %q parent span id = %s; want %s (span %q)", child.Name(), got, want, parent.Name())
	}
}

// AssertRemoteChildOf is [AssertChildOf] for a child whose parent arrived
// through a propagator (across a message or a request), which the SDK marks
// as remote.
func AssertRemoteChildOf(t testing.TB, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	AssertChildOf(t, child, parent)
	if !child.Parent().IsRemote() {
		t.Errorf("span %q parent is local; want remote (propagated)", child.Name())
	}
}

// AssertRoot fails the test unless s has no parent.
func AssertRoot(t testing.TB, s sdktrace.ReadOnlySpan) {
	t.Helper()
	if s.Parent().IsValid() {
		t.Errorf("span %q has parent %s; want a root span", s.Name(), s.Parent().SpanID())
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, s.Name())
	}
	slices.Sort(out)
	return out
}
