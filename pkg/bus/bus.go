package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/telemetry"
)

// instrumentationName names this package's tracer.
const instrumentationName = "github.com/cofferhq/coffer/pkg/bus"

// Publisher stores an event in JetStream.
type Publisher interface {
	// Publish stores msg on subject and returns once JetStream has
	// acknowledged it. id is the message's deterministic idempotency key:
	// publishing again with the same id within the stream's duplicate
	// window stores nothing and returns nil. The trace context in ctx
	// travels with the message.
	Publish(ctx context.Context, subject string, msg proto.Message, id string) error
}

// Subscriber delivers events from a durable consumer to a handler.
type Subscriber interface {
	// Consume delivers the messages of a durable consumer to h, at least
	// once each, until the Subscription is stopped or drained.
	Consume(ctx context.Context, spec ConsumerSpec, h Handler) (*Subscription, error)
}

var (
	_ Publisher  = (*Bus)(nil)
	_ Subscriber = (*Bus)(nil)
)

// Config configures a [Bus].
type Config struct {
	// Logger receives the bus's own records (poison messages, fetch
	// errors). Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the producer and consumer spans. Default: no-op.
	TracerProvider trace.TracerProvider
	// Propagator carries trace context in message headers. Default:
	// telemetry.Propagator() (W3C TraceContext + Baggage).
	Propagator propagation.TextMapPropagator
	// NakDelay is the redelivery delay after a transient handler error when
	// the ConsumerSpec has no Backoff. Default 1s.
	NakDelay time.Duration
	// FetchWait is how long one pull request waits for messages before it
	// is renewed. A stopping subscription waits for its last pull request
	// to run out, so this bounds how long Drain takes when idle; shorter
	// means more idle requests (one per FetchWait per subscription).
	// Default 1s.
	FetchWait time.Duration
	// SettleTimeout bounds acknowledging a handled message (a double ack
	// that waits for the server) and the OnPoison call. Default 5s.
	SettleTimeout time.Duration
	// OnPoison is called, before the message is terminated, for every
	// message that will never be delivered again: the handler returned a
	// Permanent or ErrMalformed error, or a transient error on the last
	// allowed delivery (ConsumerSpec.MaxDeliver). Services use it to emit a
	// failure a person will see. ctx carries the consumer span and is not
	// cancelled by Stop. It is called at least once per poison message
	// (exactly once unless the process dies between the call and the
	// termination). Default: none; the bus logs poison messages anyway.
	OnPoison func(ctx context.Context, m *Message, err error)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Propagator == nil {
		c.Propagator = telemetry.Propagator()
	}
	if c.NakDelay == 0 {
		c.NakDelay = time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = time.Second
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 5 * time.Second
	}
}

// Validate reports every problem with c at once. Zero values are valid:
// they mean the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.NakDelay < 0 {
		errs = append(errs, fmt.Errorf("negative nak delay %v", c.NakDelay))
	}
	if c.FetchWait < 0 || (c.FetchWait > 0 && c.FetchWait < 10*time.Millisecond) {
		errs = append(errs, fmt.Errorf("fetch wait %v below 10ms", c.FetchWait))
	}
	if c.SettleTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative settle timeout %v", c.SettleTimeout))
	}
	return errors.Join(errs...)
}

// Bus publishes and consumes protobuf events over one NATS connection with
// JetStream. It is safe for concurrent use.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	tracer trace.Tracer

	mu   sync.Mutex
	subs map[*Subscription]struct{} // running, for Backlog
}

// New returns a Bus over nc. The caller keeps ownership of nc and closes (or
// drains) it after stopping every Subscription.
func New(nc *nats.Conn, cfg Config) (*Bus, error) {
	if nc == nil {
		return nil, errors.New("new bus: nil connection")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bus config: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("new bus: jetstream: %w", err)
	}
	return &Bus{
		nc:     nc,
		js:     js,
		cfg:    cfg,
		tracer: cfg.TracerProvider.Tracer(instrumentationName),
	}, nil
}

// JetStream is the JetStream context the bus uses, for packages that need
// JetStream directly over the same connection (key-value buckets).
func (b *Bus) JetStream() jetstream.JetStream { return b.js }
