package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/nats-io/nats.go"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/telemetry"
)

// errorHeader carries a responder's error in place of a reply: the
// requester gets it as its error.
const errorHeader = "Coffer-Error"

// Responder answers one request with a protobuf reply. data is the
// request's marshalled payload. An error goes back to the requester as
// its error, so it should say what went wrong in the requester's terms.
// ctx carries the server span (a child of the requester's span) and is
// cancelled when the responder's Serve is stopped.
type Responder func(ctx context.Context, data []byte) (proto.Message, error)

// Request sends req on subject over core NATS, not JetStream: nothing is
// stored, and the request reaches whoever subscribes to subject now, one
// member of each queue group (see [Bus.Serve]). It waits for the first
// reply until ctx ends (give it a deadline) and unmarshals it into resp.
// The trace context of ctx travels with the request.
//
// When nothing subscribes to subject the error wraps [ErrNoResponder];
// when ctx ends first it wraps ctx's error; when the responder failed it
// carries the responder's error text.
func (b *Bus) Request(ctx context.Context, subject string, req, resp proto.Message) (err error) {
	if resp == nil {
		return fmt.Errorf("request %s: nil reply message", subject)
	}
	data, err := marshal("request", subject, req)
	if err != nil {
		return err
	}
	ctx, span := b.tracer.Start(ctx, "request "+subject,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("request"),
			semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageBodySize(len(data)),
		))
	defer func() { endSpan(span, err) }()

	reply, err := b.nc.RequestMsgWithContext(ctx, b.outgoing(ctx, subject, req, data))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("request %s: %w", subject, ErrNoResponder)
	case err != nil:
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if msg := reply.Header.Get(errorHeader); msg != "" {
		return fmt.Errorf("request %s: %s", subject, msg)
	}
	answer := &Message{Subject: subject, Data: reply.Data, Headers: reply.Header}
	if answer.Headers == nil {
		answer.Headers = nats.Header{}
	}
	if err := answer.Decode(resp); err != nil {
		return fmt.Errorf("request %s: reply: %w", subject, err)
	}
	return nil
}

// Serve answers the requests sent on subject with h until the returned
// stop is called. Every Serve with the same queue name, in any process,
// shares the requests: each goes to one of them. Each request runs in its
// own goroutine, so a slow one does not hold up the others. ctx bounds
// the setup (Serve returns once the server has the subscription, so a
// Request sent after it finds a responder); its values, not its
// cancellation, reach the handlers.
//
// stop stops taking requests, cancels the context of the handlers still
// running and waits for them to return and their replies to be sent. It
// may be called more than once.
func (b *Bus) Serve(ctx context.Context, subject, queue string, h Responder) (stop func(), err error) {
	if h == nil {
		return nil, fmt.Errorf("serve %s: nil handler", subject)
	}
	if queue == "" {
		return nil, fmt.Errorf("serve %s: empty queue group (the responders that share the requests)", subject)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu       sync.Mutex
		stopped  bool
		inflight sync.WaitGroup
	)
	sub, err := b.nc.QueueSubscribe(subject, queue, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return // the requester times out, or another responder answers a retry
		}
		inflight.Go(func() { b.respond(hctx, queue, m, h) })
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("serve %s: subscribe: %w", subject, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			mu.Lock()
			stopped = true
			mu.Unlock()
			_ = sub.Unsubscribe()
			cancel()
			inflight.Wait()
		})
	}
	// FlushWithContext refuses a context without a deadline.
	fctx, fcancel := context.WithTimeout(ctx, b.cfg.SettleTimeout)
	defer fcancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		stop()
		return nil, fmt.Errorf("serve %s: flush the subscription: %w", subject, err)
	}
	return stop, nil
}

// respond runs the handler on one request and sends its reply.
func (b *Bus) respond(ctx context.Context, queue string, m *nats.Msg, h Responder) {
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	ctx = b.cfg.Propagator.Extract(ctx, headerCarrier(m.Header))
	ctx, span := b.tracer.Start(ctx, "serve "+m.Subject,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("serve"),
			semconv.MessagingDestinationName(m.Subject),
			semconv.MessagingConsumerGroupName(queue),
			semconv.MessagingMessageBodySize(len(m.Data)),
		))
	var err error
	defer func() { endSpan(span, err) }()

	reply := &nats.Msg{Header: nats.Header{}}
	resp, err := b.runResponder(ctx, m, h)
	if err == nil {
		reply.Data, err = proto.Marshal(resp)
		reply.Header.Set(contentTypeHeader, contentType(resp))
	}
	if err != nil {
		reply.Data = nil
		reply.Header = nats.Header{}
		reply.Header.Set(errorHeader, err.Error())
	}
	if m.Reply == "" {
		return // published, not requested: nobody waits for the answer
	}
	if rerr := m.RespondMsg(reply); rerr != nil {
		b.cfg.Logger.WarnContext(ctx, "reply not sent", slog.String(telemetry.SubjectKey, m.Subject), slog.Any("error", rerr))
	}
}

// runResponder calls the handler and turns a panic, or a nil reply, into
// an error.
func (b *Bus) runResponder(ctx context.Context, m *nats.Msg, h Responder) (resp proto.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			b.cfg.Logger.ErrorContext(ctx, "responder panicked", slog.String(telemetry.SubjectKey, m.Subject), slog.Any("panic", r),
				slog.String("stack", string(debug.Stack())))
			resp, err = nil, fmt.Errorf("the responder to %s failed", m.Subject)
		}
	}()
	resp, err = h(ctx, m.Data)
	if err == nil && resp == nil {
		err = fmt.Errorf("the responder to %s gave no reply", m.Subject)
	}
	return resp, err
}
