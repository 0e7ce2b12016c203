package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config is what [Setup] needs. main fills it, usually with [FromEnv], and
// sets ServiceName when the environment did not.
type Config struct {
	// ServiceName is the service.name resource attribute. Required.
	ServiceName string
	// ServiceVersion is the service.version resource attribute, if known.
	ServiceVersion string
	// Disabled installs a no-op tracer provider (OTEL_SDK_DISABLED=true).
	Disabled bool
	// Exporter is "otlp" (the default) or "none" (OTEL_TRACES_EXPORTER).
	// With "otlp" and no Endpoint, no exporter is installed either.
	Exporter string
	// Endpoint is the OTLP endpoint, a URL such as http://collector:4317
	// or a bare host:port (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
	// OTEL_EXPORTER_OTLP_ENDPOINT). With http/protobuf a URL is the full
	// URL spans are posted to: FromEnv adds /v1/traces to the path of
	// OTEL_EXPORTER_OTLP_ENDPOINT, as the specification says, and a bare
	// host:port is posted to at /v1/traces. Empty means no exporter.
	Endpoint string
	// Protocol is the OTLP protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
	// else OTEL_EXPORTER_OTLP_PROTOCOL): "grpc" (the default, also when
	// empty) or "http/protobuf".
	Protocol string
	// Insecure disables TLS for a bare host:port Endpoint
	// (OTEL_EXPORTER_OTLP_INSECURE). A URL endpoint's scheme decides instead.
	Insecure bool
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// Timeout bounds one export (OTEL_EXPORTER_OTLP_TIMEOUT); default 10s.
	Timeout time.Duration
	// Sampler is an OTEL_TRACES_SAMPLER name: always_on, always_off,
	// traceidratio, parentbased_always_on (the default),
	// parentbased_always_off or parentbased_traceidratio.
	Sampler string
	// SamplerArg is the ratio for the traceidratio samplers
	// (OTEL_TRACES_SAMPLER_ARG); default 1.
	SamplerArg string
	// ResourceAttributes are extra resource attributes
	// (OTEL_RESOURCE_ATTRIBUTES). ServiceName wins over a service.name here.
	ResourceAttributes map[string]string
}

// FromEnv reads the standard OTEL_* variables through getenv (os.Getenv in
// main). Malformed list entries are skipped, as the OpenTelemetry
// specification asks; malformed scalar values are kept and rejected by
// [Config.Validate].
func FromEnv(getenv func(string) string) Config {
	c := Config{
		ServiceName: getenv("OTEL_SERVICE_NAME"),
		Exporter:    strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")),
		Endpoint:    strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
		Protocol:    strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")),
		Sampler:     strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")),
		SamplerArg:  strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")),
	}
	c.Disabled = strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true")
	if c.Protocol == "" {
		c.Protocol = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	if c.Endpoint == "" {
		c.Endpoint = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
		if c.Protocol == protocolHTTP && strings.Contains(c.Endpoint, "://") {
			// the general endpoint is a base URL; the signal's path follows
			c.Endpoint = strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
		}
	}
	insecure := getenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
	if insecure == "" {
		insecure = getenv("OTEL_EXPORTER_OTLP_INSECURE")
	}
	c.Insecure = strings.EqualFold(strings.TrimSpace(insecure), "true")
	c.Headers = parseList(getenv("OTEL_EXPORTER_OTLP_HEADERS"))
	for k, v := range parseList(getenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS")) {
		if c.Headers == nil {
			c.Headers = map[string]string{}
		}
		c.Headers[k] = v
	}
	timeout := getenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
	if timeout == "" {
		timeout = getenv("OTEL_EXPORTER_OTLP_TIMEOUT")
	}
	if ms, err := strconv.Atoi(strings.TrimSpace(timeout)); err == nil && ms > 0 {
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	c.ResourceAttributes = parseList(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	return c
}

// parseList parses the W3C-Baggage-like "k=v,k2=v2" lists of the OTEL_*
// variables, with percent-encoded values.
func parseList(s string) map[string]string {
	var m map[string]string
	for entry := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = dv
	}
	return m
}

func (c *Config) setDefaults() {
	if c.Exporter == "" {
		c.Exporter = "otlp"
	}
	if c.Sampler == "" {
		c.Sampler = "parentbased_always_on"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

// Validate reports every problem with c at once. A disabled Config is
// always valid: nothing else in it is used.
func (c Config) Validate() error {
	if c.Disabled {
		return nil
	}
	var errs []error
	if c.ServiceName == "" {
		errs = append(errs, errors.New("service name is required"))
	}
	switch c.Exporter {
	case "", "otlp", "none":
	default:
		errs = append(errs, fmt.Errorf("unsupported traces exporter %q (want otlp or none)", c.Exporter))
	}
	switch c.Protocol {
	case "", protocolGRPC, protocolHTTP:
	default:
		errs = append(errs, fmt.Errorf("unsupported OTLP protocol %q (want grpc or http/protobuf)", c.Protocol))
	}
	if _, err := c.sampler(); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative export timeout %v", c.Timeout))
	}
	return errors.Join(errs...)
}

func (c Config) sampler() (sdktrace.Sampler, error) {
	ratio := 1.0
	if c.SamplerArg != "" && strings.HasSuffix(c.Sampler, "traceidratio") {
		r, err := strconv.ParseFloat(c.SamplerArg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("sampler argument %q is not a ratio in [0, 1]", c.SamplerArg)
		}
		ratio = r
	}
	switch c.Sampler {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	default:
		return nil, fmt.Errorf("unsupported sampler %q", c.Sampler)
	}
}

// Propagator returns the propagator coffer uses on every hop: W3C
// TraceContext (traceparent, tracestate) and W3C Baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup installs the global tracer provider and propagator described by cfg
// and returns a shutdown function that flushes pending spans and stops the
// exporter; call it once, with a deadline, after the services have drained.
// Setup is for main only: components take a trace.TracerProvider instead of
// reading the global one.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("telemetry config: %w", err)
	}
	otel.SetTextMapPropagator(Propagator())
	if cfg.Disabled {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}

	sampler, err := cfg.sampler()
	if err != nil {
		return nil, err // unreachable: Validate checked it
	}
	res, err := cfg.resource(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	}
	if cfg.Exporter == "otlp" && cfg.Endpoint != "" {
		exp, err := cfg.exporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("create otlp trace exporter for %s: %w", cfg.Endpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// The OTLP protocols coffer exports spans with.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http/protobuf"
)

// exporter is the OTLP exporter of c.Protocol.
func (c Config) exporter(ctx context.Context) (*otlptrace.Exporter, error) {
	if c.Protocol == protocolHTTP {
		return otlptracehttp.New(ctx, c.httpOptions()...)
	}
	return otlptracegrpc.New(ctx, c.exporterOptions()...)
}

func (c Config) httpOptions() []otlptracehttp.Option {
	opts := []otlptracehttp.Option{otlptracehttp.WithTimeout(c.Timeout)}
	if strings.Contains(c.Endpoint, "://") {
		// the full URL: its scheme decides TLS, its path is used as is
		opts = append(opts, otlptracehttp.WithEndpointURL(c.Endpoint))
	} else {
		opts = append(opts, otlptracehttp.WithEndpoint(c.Endpoint))
		if c.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
	}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	return opts
}

func (c Config) exporterOptions() []otlptracegrpc.Option {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithTimeout(c.Timeout)}
	if strings.Contains(c.Endpoint, "://") {
		// The URL's scheme decides TLS (http → plaintext, https → TLS).
		opts = append(opts, otlptracegrpc.WithEndpointURL(c.Endpoint))
	} else {
		opts = append(opts, otlptracegrpc.WithEndpoint(c.Endpoint))
		if c.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
	}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(c.Headers))
	}
	return opts
}

func (c Config) resource(ctx context.Context) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, len(c.ResourceAttributes)+2)
	for k, v := range c.ResourceAttributes {
		attrs = append(attrs, attribute.String(k, v))
	}
	// Later attributes win, so the explicit service name overrides one in
	// ResourceAttributes.
	attrs = append(attrs, semconv.ServiceName(c.ServiceName))
	if c.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(c.ServiceVersion))
	}
	// resource.Default would read OTEL_RESOURCE_ATTRIBUTES itself; build the
	// resource from cfg alone.
	return resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
	)
}
