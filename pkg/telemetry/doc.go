// Package telemetry sets up tracing for a coffer process and ties logs to
// traces.
//
// It guarantees:
//
//   - The environment is read only where main asks: [FromEnv] takes a getenv
//     function and returns a [Config]; nothing below it calls os.Getenv.
//     [Setup] builds the tracer provider from that Config alone, passing
//     every setting it owns explicitly to the SDK.
//   - [Setup] is the only function here that touches OpenTelemetry's globals
//     (tracer provider and propagator), and it is meant for main. Components
//     take a trace.TracerProvider and a propagation.TextMapPropagator as
//     parameters; tests pass the in-memory recorder from package
//     telemetrytest.
//   - With an OTLP endpoint configured, spans are batched to it over gRPC,
//     or over HTTP with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.
//     Without one, tracing stays on with no exporter: every span still has a
//     trace id and span id, so log lines written inside a span can be
//     correlated. OTEL_SDK_DISABLED=true installs a no-op provider; trace
//     context arriving from upstream is still propagated unchanged.
//   - The propagator is W3C TraceContext plus W3C Baggage ([Propagator]).
//   - [NewLogHandler] adds trace_id and span_id to every record logged with a
//     context that carries a valid span.
//   - Attribute keys shared by logs and spans across services are constants
//     here (job_id, instance, database, subject, recovery_point), so every
//     service spells them the same way.
package telemetry
