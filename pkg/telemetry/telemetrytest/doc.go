// Package telemetrytest records spans in memory so tests can assert on
// traces without a collector and without touching OpenTelemetry's globals.
//
// A test builds a [Recorder] with [New], passes [Recorder.TracerProvider] to
// the component under test, and then looks spans up by name. Every span is
// sampled and kept until the test ends.
//
// It guarantees that spans are recorded only for the provider the test
// injects (never the global one), that [Recorder.Span] waits for spans of
// asynchronous work to end instead of racing them, and that the assertion
// helpers report the span names involved when they fail.
package telemetrytest
