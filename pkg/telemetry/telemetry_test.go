package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
)

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want telemetry.Config
	}{
		{"empty", nil, telemetry.Config{}},
		{
			"endpoint, headers and resource",
			map[string]string{
				"OTEL_SERVICE_NAME":           "scheduler",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
				"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer%20abc, x-tenant=t1,malformed",
				"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment=prod,host.name=db%2Dbox",
				"OTEL_EXPORTER_OTLP_TIMEOUT":  "2500",
				"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
				"OTEL_TRACES_SAMPLER_ARG":     "0.25",
			},
			telemetry.Config{
				ServiceName:        "scheduler",
				Endpoint:           "http://collector:4317",
				Headers:            map[string]string{"authorization": "Bearer abc", "x-tenant": "t1"},
				ResourceAttributes: map[string]string{"deployment.environment": "prod", "host.name": "db-box"},
				Timeout:            2500 * time.Millisecond,
				Sampler:            "parentbased_traceidratio",
				SamplerArg:         "0.25",
			},
		},
		{
			"traces endpoint wins",
			map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://general:4317",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317",
				"OTEL_EXPORTER_OTLP_INSECURE":        "TRUE",
			},
			telemetry.Config{Endpoint: "collector:4317", Insecure: true},
		},
		{
			"http: the general endpoint is a base URL",
			map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp/",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			},
			telemetry.Config{Endpoint: "https://collector:4318/otlp/v1/traces", Protocol: "http/protobuf"},
		},
		{
			"http: the traces endpoint is used as is",
			map[string]string{
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom",
				"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://general:4318",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
				"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
			},
			telemetry.Config{Endpoint: "http://collector:4318/custom", Protocol: "http/protobuf"},
		},
		{
			"disabled",
			map[string]string{"OTEL_SDK_DISABLED": "True", "OTEL_TRACES_EXPORTER": "none"},
			telemetry.Config{Disabled: true, Exporter: "none"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := telemetry.FromEnv(getenv(tt.env))
			if !configEqual(got, tt.want) {
				t.Errorf("FromEnv() = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func configEqual(a, b telemetry.Config) bool {
	return maps.Equal(a.Headers, b.Headers) &&
		maps.Equal(a.ResourceAttributes, b.ResourceAttributes) &&
		reflect.DeepEqual(withoutMaps(a), withoutMaps(b))
}

func withoutMaps(c telemetry.Config) telemetry.Config {
	c.Headers, c.ResourceAttributes = nil, nil
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     telemetry.Config
		wantErr string
	}{
		{"minimal", telemetry.Config{ServiceName: "s"}, ""},
		{"no service name", telemetry.Config{}, "service name"},
		{"http protocol", telemetry.Config{ServiceName: "s", Protocol: "http/protobuf"}, ""},
		{"grpc protocol", telemetry.Config{ServiceName: "s", Protocol: "grpc"}, ""},
		{"json protocol", telemetry.Config{ServiceName: "s", Protocol: "http/json"}, "protocol"},
		{"unknown sampler", telemetry.Config{ServiceName: "s", Sampler: "sometimes"}, "sampler"},
		{"bad ratio", telemetry.Config{ServiceName: "s", Sampler: "traceidratio", SamplerArg: "2"}, "ratio"},
		{"unknown exporter", telemetry.Config{ServiceName: "s", Exporter: "zipkin"}, "exporter"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: Validate() = %v; want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: Validate() = %v; want an error about %q", tt.name, err, tt.wantErr)
		}
	}
}

// restoreGlobals puts OpenTelemetry's globals back after a test of Setup.
func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
	})
}

func TestSetupWithoutExporterStillMakesIDs(t *testing.T) {
	restoreGlobals(t)
	shutdown, err := telemetry.Setup(t.Context(), telemetry.FromEnv(getenv(map[string]string{"OTEL_SERVICE_NAME": "test"})))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	ctx, span := otel.Tracer("t").Start(t.Context(), "work")
	defer span.End()
	if sc := span.SpanContext(); !sc.IsValid() || !sc.IsSampled() {
		t.Errorf("span context %+v; want valid and sampled ids without an exporter", sc)
	}

	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	if !strings.Contains(carrier["traceparent"], span.SpanContext().TraceID().String()) {
		t.Errorf("injected traceparent %q; want the span's trace id", carrier["traceparent"])
	}
}

func TestSetupWithEndpoint(t *testing.T) {
	restoreGlobals(t)
	// Nothing listens there: the exporter connects lazily, and shutdown
	// with nothing to flush returns promptly.
	shutdown, err := telemetry.Setup(t.Context(), telemetry.Config{
		ServiceName: "test",
		Endpoint:    "http://127.0.0.1:1",
		Timeout:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestSetupDisabled(t *testing.T) {
	restoreGlobals(t)
	shutdown, err := telemetry.Setup(t.Context(), telemetry.FromEnv(getenv(map[string]string{
		"OTEL_SDK_DISABLED":           "true",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
	})))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer shutdown(context.Background())
	_, span := otel.Tracer("t").Start(t.Context(), "work")
	if span.SpanContext().IsValid() || span.IsRecording() {
		t.Errorf("disabled SDK made a real span: %+v", span.SpanContext())
	}

	// Trace context from upstream still passes through.
	carrier := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	ctx := otel.GetTextMapPropagator().Extract(t.Context(), carrier)
	ctx, child := otel.Tracer("t").Start(ctx, "child")
	defer child.End()
	out := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, out)
	if out["traceparent"] != carrier["traceparent"] {
		t.Errorf("propagated traceparent %q; want %q unchanged", out["traceparent"], carrier["traceparent"])
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	restoreGlobals(t)
	if _, err := telemetry.Setup(t.Context(), telemetry.Config{}); err == nil {
		t.Error("Setup without a service name: nil error")
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	rec := telemetrytest.New(t)
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, slog.LevelInfo).With(slog.String(telemetry.JobIDKey, "job-7"))

	ctx, span := rec.Tracer().Start(t.Context(), "backup")
	log.InfoContext(ctx, "backup started", slog.String(telemetry.DatabaseKey, "Sales DB"))
	span.End()
	log.InfoContext(t.Context(), "no span here")
	log.DebugContext(ctx, "below level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines; want 2:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if first[telemetry.TraceIDKey] != sc.TraceID().String() || first[telemetry.SpanIDKey] != sc.SpanID().String() {
		t.Errorf("trace_id, span_id = %v, %v; want %s, %s", first[telemetry.TraceIDKey], first[telemetry.SpanIDKey], sc.TraceID(), sc.SpanID())
	}
	if first[telemetry.JobIDKey] != "job-7" || first[telemetry.DatabaseKey] != "Sales DB" {
		t.Errorf("attributes lost: %v", first)
	}
	if _, ok := second[telemetry.TraceIDKey]; ok {
		t.Errorf("record without a span has trace_id: %v", second)
	}
}

func TestRecorderHelpers(t *testing.T) {
	rec := telemetrytest.New(t)
	tr := rec.TracerProvider().Tracer("t")
	ctx, parent := tr.Start(t.Context(), "parent")
	_, child := tr.Start(ctx, "child")
	child.End()
	parent.End()

	p, c := rec.Span(t, "parent"), rec.Span(t, "child")
	telemetrytest.AssertRoot(t, p)
	telemetrytest.AssertChildOf(t, c, p)
	if got := len(rec.Named("child")); got != 1 {
		t.Errorf("Named(child) has %d spans; want 1", got)
	}
	if got := len(rec.Ended()); got != 2 {
		t.Errorf("Ended() has %d spans; want 2", got)
	}
	if trace.SpanFromContext(ctx).SpanContext().SpanID() != p.SpanContext().SpanID() {
		t.Error("span in context is not the recorded parent")
	}
}

// TestSetupExportsOverHTTP: with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
// spans are posted as protobuf to the endpoint's /v1/traces.
func TestSetupExportsOverHTTP(t *testing.T) {
	restoreGlobals(t)
	type post struct{ path, contentType string }
	posts := make(chan post, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		posts <- post{r.URL.Path, r.Header.Get("Content-Type")}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	shutdown, err := telemetry.Setup(t.Context(), telemetry.FromEnv(getenv(map[string]string{
		"OTEL_SERVICE_NAME":           "test",
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	})))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, span := otel.Tracer("t").Start(t.Context(), "work")
	span.End()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil { // flushes the batch
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case p := <-posts:
		if p.path != "/v1/traces" || p.contentType != "application/x-protobuf" {
			t.Errorf("spans posted to %s as %s; want /v1/traces as application/x-protobuf", p.path, p.contentType)
		}
	default:
		t.Error("no spans posted to the OTLP/HTTP endpoint")
	}
}
