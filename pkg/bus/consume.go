package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/telemetry"
)

// Handler processes one message. Its result settles the message:
//
//   - nil: acknowledged, never delivered again;
//   - an error marked with [Permanent], or wrapping [ErrMalformed]:
//     Config.OnPoison is called and the message is terminated;
//   - any other error: redelivered after a delay (ConsumerSpec.Backoff or
//     Config.NakDelay), unless this was delivery MaxDeliver, in which case
//     it is poison as above.
//
// JetStream delivers at least once, so handlers must be idempotent. ctx
// carries the consumer span (a child of the publisher's span) and is
// cancelled by [Subscription.Stop]. A panic is recovered and treated as a
// transient error.
type Handler func(ctx context.Context, m *Message) error

// ConsumerSpec describes a durable pull consumer and how this process
// consumes it.
type ConsumerSpec struct {
	// Stream the consumer reads. Required.
	Stream string
	// Durable names the consumer. Required. Every Consume call, in any
	// process, with the same Stream and Durable shares one consumer: each
	// message goes to one of them.
	Durable string
	// FilterSubjects restricts the consumer to these subjects; empty means
	// the whole stream.
	FilterSubjects []string
	// AckWait is how long the server waits for a settlement before it
	// redelivers. While a handler runs the bus tells the server it is still
	// working every AckWait/3, so a long handler is not redelivered. Default
	// 30s.
	AckWait time.Duration
	// MaxDeliver is the number of deliveries before a failing message is
	// treated as poison. Default 5; -1 means unlimited (never poison by
	// count).
	MaxDeliver int
	// MaxAckPending caps the messages delivered and not yet settled across
	// every subscriber of the consumer. 0 means the server default (1000).
	MaxAckPending int
	// Backoff is the redelivery delay after the n-th failed delivery
	// (Backoff[n-1], the last entry repeating). Empty means
	// Config.NakDelay. The delays are applied by this client through
	// NakWithDelay, not set on the server, so AckWait keeps its meaning.
	Backoff []time.Duration
	// Concurrency is how many handlers this Subscription runs at once.
	// Default 1. The bus pulls only as many messages as it has free
	// handlers, so a busy worker leaves work for the others.
	Concurrency int
}

func (s *ConsumerSpec) setDefaults() {
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 5
	}
	if s.Concurrency == 0 {
		s.Concurrency = 1
	}
}

// Validate reports every problem with s at once. Zero values are valid
// where they mean a default.
func (s ConsumerSpec) Validate() error {
	var errs []error
	if s.Stream == "" {
		errs = append(errs, errors.New("stream is required"))
	}
	if s.Durable == "" {
		errs = append(errs, errors.New("durable name is required"))
	}
	if s.AckWait < 0 || (s.AckWait > 0 && s.AckWait < 30*time.Millisecond) {
		errs = append(errs, fmt.Errorf("ack wait %v below 30ms", s.AckWait))
	}
	if s.MaxDeliver < -1 {
		errs = append(errs, fmt.Errorf("max deliver %d (want -1, 0 for the default, or more)", s.MaxDeliver))
	}
	if s.MaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("negative max ack pending %d", s.MaxAckPending))
	}
	for i, d := range s.Backoff {
		if d < 0 {
			errs = append(errs, fmt.Errorf("negative backoff[%d] %v", i, d))
		}
	}
	if s.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("negative concurrency %d", s.Concurrency))
	}
	return errors.Join(errs...)
}

func (s ConsumerSpec) config() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       s.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    s.MaxDeliver,
		MaxAckPending: s.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(s.FilterSubjects) == 1 {
		cfg.FilterSubject = s.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = s.FilterSubjects
	}
	return cfg
}

// Consume creates the durable consumer described by spec, or updates it to
// match, and delivers its messages to h until the returned Subscription is
// stopped or drained. ctx bounds only the setup; the subscription lives
// until Stop or Drain, so a cancelled signal context does not abort
// in-flight work (see [Subscription.Drain]).
func (b *Bus) Consume(ctx context.Context, spec ConsumerSpec, h Handler) (*Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("consume %s/%s: nil handler", spec.Stream, spec.Durable)
	}
	spec.setDefaults()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, spec.config())
	if err != nil {
		return nil, fmt.Errorf("consume %s/%s: create consumer: %w", spec.Stream, spec.Durable, err)
	}
	unwatch := func() {}
	if spec.MaxDeliver > 0 {
		if unwatch, err = b.WatchExhausted(spec.Stream, spec.Durable); err != nil {
			return nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
		}
	}

	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	fetchCtx, cancelFetch := context.WithCancel(context.WithoutCancel(ctx))
	s := &Subscription{
		bus:            b,
		spec:           spec,
		cons:           cons,
		handler:        h,
		log:            b.cfg.Logger.With(slog.String("stream", spec.Stream), slog.String("consumer", spec.Durable)),
		slots:          make(chan struct{}, spec.Concurrency),
		handlerCtx:     handlerCtx,
		cancelHandlers: cancelHandlers,
		fetchCtx:       fetchCtx,
		cancelFetch:    cancelFetch,
		fetchDone:      make(chan struct{}),
		done:           make(chan struct{}),
	}
	b.track(s, true)
	go s.fetchLoop()
	go func() {
		<-s.fetchDone
		s.inflight.Wait() // no Add after fetchDone: the fetch loop is the only caller
		unwatch()
		b.track(s, false)
		close(s.done)
	}()
	return s, nil
}

// Subscription is one process's share of a durable consumer.
type Subscription struct {
	bus     *Bus
	spec    ConsumerSpec
	cons    jetstream.Consumer
	handler Handler
	log     *slog.Logger

	slots          chan struct{} // one token per running handler
	handlerCtx     context.Context
	cancelHandlers context.CancelFunc
	fetchCtx       context.Context
	cancelFetch    context.CancelFunc
	fetchDone      chan struct{}
	inflight       sync.WaitGroup
	done           chan struct{}
}

// Stop stops pulling messages and cancels the context of every running
// handler. It does not wait: use [Subscription.Drain] or
// [Subscription.Done] for that. The pull request already waiting on the
// server runs out (within Config.FetchWait); messages it still brings, and
// messages a handler fails after Stop, are given back at once (nak without
// delay) for another subscriber.
func (s *Subscription) Stop() {
	s.cancelFetch()
	s.cancelHandlers()
}

// Drain stops pulling messages and waits for the running handlers to finish
// and their messages to be settled, and for the last pull request to run
// out (at most Config.FetchWait, even when idle): the staged shutdown. If
// ctx ends first,
// Drain stops the subscription (cancelling the handlers' context) and
// returns ctx's error without waiting further; unsettled messages are
// redelivered after AckWait.
func (s *Subscription) Drain(ctx context.Context) error {
	s.cancelFetch()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.Stop()
		return fmt.Errorf("drain %s/%s: %w", s.spec.Stream, s.spec.Durable, ctx.Err())
	}
	// Acks are awaited by the handlers; naks and terms are fire-and-forget,
	// so flush them before the caller closes the connection.
	// FlushWithContext refuses a context without a deadline.
	fctx, cancel := context.WithTimeout(ctx, s.bus.cfg.SettleTimeout)
	defer cancel()
	if err := s.bus.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("drain %s/%s: flush: %w", s.spec.Stream, s.spec.Durable, err)
	}
	return nil
}

// Done is closed once the subscription has stopped pulling and every
// handler it started has returned and settled its message.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) stopping() bool { return s.fetchCtx.Err() != nil }

// stopNakDelay is the delay of a message handed back while stopping. The
// subscription's last pull request stays open for up to FetchWait; a
// message naked without delay would come straight back to it, be naked
// again, and burn its deliveries until the server drops it unreported.
func (s *Subscription) stopNakDelay() time.Duration { return 2 * s.bus.cfg.FetchWait }

func (s *Subscription) fetchLoop() {
	defer close(s.fetchDone)
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		// Wait for one free handler, then take every other free one: the
		// pull asks for exactly as many messages as can start now.
		select {
		case s.slots <- struct{}{}:
		case <-s.fetchCtx.Done():
			return
		}
		n := 1
	more:
		for n < cap(s.slots) {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}

		// The pull runs to its expiry even when Stop or Drain comes first.
		// Abandoning it early loses messages: the server keeps the pull
		// request until it sees the client's interest go, and whatever it
		// sends in between is dropped by the client and only redelivered
		// after AckWait. Letting it expire, and handing back what arrives
		// meanwhile, costs a stopping subscription at most FetchWait.
		// (FetchContext and FetchMaxWait exclude each other; the context's
		// deadline becomes the request's expiry, a little before it.)
		pullCtx, cancelPull := context.WithTimeout(context.Background(), s.bus.cfg.FetchWait)
		batch, err := s.cons.Fetch(n, jetstream.FetchContext(pullCtx))
		if err != nil {
			cancelPull()
			s.release(n)
			if s.stopping() {
				return
			}
			s.log.Warn("pull failed", slog.Any("error", err))
			if !s.pause(bo.NextBackOff()) {
				return
			}
			continue
		}
		started := 0
		for jm := range batch.Messages() {
			if s.stopping() {
				// Pulled as Stop or Drain began: hand it back, delayed past
				// this subscription's last pull so that it goes to another
				// consumer, not back here (see stopNakDelay).
				_ = jm.NakWithDelay(s.stopNakDelay())
				continue
			}
			started++
			s.inflight.Add(1)
			go func() {
				defer s.inflight.Done()
				defer s.release(1)
				s.process(jm)
			}()
		}
		cancelPull()
		s.release(n - started)
		if err := batch.Error(); err != nil && !s.stopping() && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn("pull ended with error", slog.Any("error", err))
			if !s.pause(bo.NextBackOff()) {
				return
			}
			continue
		}
		bo.Reset()
	}
}

func (s *Subscription) release(n int) {
	for range n {
		<-s.slots
	}
}

// pause waits d, or until the subscription stops; it reports whether to go on.
func (s *Subscription) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.fetchCtx.Done():
		return false
	}
}

// process runs the handler on one message and settles it.
func (s *Subscription) process(jm jetstream.Msg) {
	m := newMessage(jm)
	ctx := s.bus.cfg.Propagator.Extract(s.handlerCtx, headerCarrier(m.Headers))
	ctx, span := s.bus.tracer.Start(ctx, "process "+m.Subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(m.Subject),
			semconv.MessagingConsumerGroupName(s.spec.Durable),
			semconv.MessagingMessageID(m.ID()),
			semconv.MessagingMessageBodySize(len(m.Data)),
			attribute.String("messaging.nats.stream", s.spec.Stream),
			attribute.Int64("messaging.nats.sequence", int64(m.Sequence())),
			attribute.Int64("messaging.nats.delivered", int64(m.Delivered())),
		))
	defer span.End()

	err := s.runHandler(ctx, jm, m)
	if err == nil {
		s.ack(ctx, jm, m)
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	log := s.log.With(slog.String(telemetry.SubjectKey, m.Subject), slog.String("msg_id", m.ID()),
		slog.Uint64("delivered", m.Delivered()), slog.Any("error", err))

	switch {
	case IsPermanent(err):
		s.poison(ctx, log, jm, m, err)
	case s.handlerCtx.Err() != nil:
		// Stopped: the failure is most likely the cancellation itself. Give
		// the message back, never counting it as poison, delayed past this
		// subscription's last pull (see stopNakDelay).
		if nerr := jm.NakWithDelay(s.stopNakDelay()); nerr != nil {
			log.WarnContext(ctx, "nak after stop failed", slog.Any("nak_error", nerr))
		}
	case s.spec.MaxDeliver > 0 && m.Delivered() >= uint64(s.spec.MaxDeliver):
		s.poison(ctx, log, jm, m, fmt.Errorf("gave up after %d deliveries: %w", m.Delivered(), err))
	default:
		delay := s.delay(m.Delivered())
		log.InfoContext(ctx, "handler failed; redelivering", slog.Duration("delay", delay))
		if nerr := jm.NakWithDelay(delay); nerr != nil {
			log.WarnContext(ctx, "nak failed", slog.Any("nak_error", nerr))
		}
	}
}

// runHandler calls the handler, telling the server every AckWait/3 that the
// message is still being worked on, and turns a panic into an error.
func (s *Subscription) runHandler(ctx context.Context, jm jetstream.Msg, m *Message) (err error) {
	stop := make(chan struct{})
	var ticking sync.WaitGroup
	ticking.Go(func() {
		t := time.NewTicker(s.spec.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := jm.InProgress(); err != nil {
					s.log.WarnContext(ctx, "in-progress signal failed", slog.Any("error", err))
				}
			case <-stop:
				return
			}
		}
	})
	defer func() {
		close(stop)
		ticking.Wait()
	}()
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "handler panicked", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return s.handler(ctx, m)
}

func (s *Subscription) delay(delivered uint64) time.Duration {
	if len(s.spec.Backoff) == 0 {
		return s.bus.cfg.NakDelay
	}
	i := min(int(max(delivered, 1))-1, len(s.spec.Backoff)-1)
	return s.spec.Backoff[i]
}

func (s *Subscription) settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.bus.cfg.SettleTimeout)
}

func (s *Subscription) ack(ctx context.Context, jm jetstream.Msg, m *Message) {
	actx, cancel := s.settleCtx(ctx)
	defer cancel()
	// A double ack waits for the server to confirm, so a drained
	// subscription has really settled its messages.
	if err := jm.DoubleAck(actx); err != nil {
		s.log.WarnContext(ctx, "ack failed; the message will be redelivered",
			slog.String(telemetry.SubjectKey, m.Subject), slog.String("msg_id", m.ID()), slog.Any("error", err))
	}
}

func (s *Subscription) poison(ctx context.Context, log *slog.Logger, jm jetstream.Msg, m *Message, err error) {
	log.ErrorContext(ctx, "poison message terminated", slog.Any("error", err))
	if s.bus.cfg.OnPoison != nil {
		pctx, cancel := s.settleCtx(ctx)
		s.bus.cfg.OnPoison(pctx, m, err)
		cancel()
	}
	reason := err.Error()
	if len(reason) > 200 {
		reason = strings.ToValidUTF8(reason[:200], "")
	}
	if terr := jm.TermWithReason(reason); terr != nil {
		log.WarnContext(ctx, "term failed", slog.Any("term_error", terr))
	}
}
