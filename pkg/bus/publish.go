package bus

import (
	"context"
	"errors"
	"fmt"
	"mime"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

const (
	// contentTypeHeader carries the payload's media type and, in its proto
	// parameter, the full name of the protobuf message, so a consumer can
	// tell what it got before decoding.
	contentTypeHeader = "Content-Type"
	protobufMediaType = "application/protobuf"
)

func contentType(msg proto.Message) string {
	return mime.FormatMediaType(protobufMediaType, map[string]string{
		"proto": string(msg.ProtoReflect().Descriptor().FullName()),
	})
}

// Publish marshals msg, stores it on subject with Nats-Msg-Id set to id and
// the trace context of ctx in its headers, and waits for JetStream's
// acknowledgement. A duplicate (same id within the stream's duplicate
// window) is acknowledged without being stored again and returns nil. When
// no stream captures subject the error wraps [ErrNoStream].
func (b *Bus) Publish(ctx context.Context, subject string, msg proto.Message, id string) (err error) {
	if id == "" {
		return fmt.Errorf("publish %s: empty message id (an idempotency key is required)", subject)
	}
	data, err := marshal("publish", subject, msg)
	if err != nil {
		return err
	}

	ctx, span := b.tracer.Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageID(id),
			semconv.MessagingMessageBodySize(len(data)),
		))
	defer func() { endSpan(span, err) }()

	ack, err := b.js.PublishMsg(ctx, b.outgoing(ctx, subject, msg, data), jetstream.WithMsgID(id))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("publish %s: %w: %w", subject, ErrNoStream, err)
		}
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	span.SetAttributes(
		attribute.String("messaging.nats.stream", ack.Stream),
		attribute.Int64("messaging.nats.sequence", int64(ack.Sequence)),
		attribute.Bool("messaging.nats.duplicate", ack.Duplicate),
	)
	return nil
}

// marshal encodes msg for op ("publish", "request") on subject.
func marshal(op, subject string, msg proto.Message) ([]byte, error) {
	if msg == nil {
		return nil, fmt.Errorf("%s %s: nil message", op, subject)
	}
	data, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%s %s: marshal %s: %w", op, subject, msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return data, nil
}

// outgoing is the message that carries data, msg marshalled, to subject:
// its headers say its type and carry the trace context of ctx.
func (b *Bus) outgoing(ctx context.Context, subject string, msg proto.Message, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header.Set(contentTypeHeader, contentType(msg))
	b.cfg.Propagator.Inject(ctx, headerCarrier(m.Header))
	return m
}

// endSpan ends span, marking it failed with err when err is set.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Outgoing is one message for [Bus.PublishAll].
type Outgoing struct {
	// Ctx carries the message's own trace context; nil takes
	// PublishAll's.
	Ctx     context.Context
	Subject string
	Msg     proto.Message
	// ID is the message's Nats-Msg-Id, as for [Bus.Publish].
	ID string
}

// publishAllWindow is how many messages PublishAll has in flight at once:
// below nats.go's limit of asynchronous publishes pending.
const publishAllWindow = 1000

// PublishAll stores every message as [Bus.Publish] would, but sends them
// together, without waiting for each acknowledgement before sending the
// next, and then waits for all of them. It returns one error per message,
// in order: nil when JetStream stored it or found it a duplicate. A batch
// is one span; each message carries the trace context of its own Ctx.
func (b *Bus) PublishAll(ctx context.Context, msgs []Outgoing) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	ctx, span := b.tracer.Start(ctx, "publish batch",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"), semconv.MessagingBatchMessageCount(len(msgs))))
	failed := 0
	defer func() {
		var err error
		if failed > 0 {
			err = fmt.Errorf("%d of %d messages not stored", failed, len(msgs))
		}
		endSpan(span, err)
	}()
	for lo := 0; lo < len(msgs); lo += publishAllWindow {
		hi := min(lo+publishAllWindow, len(msgs))
		futures := make([]jetstream.PubAckFuture, hi-lo)
		for i := lo; i < hi; i++ {
			m := msgs[i]
			if m.ID == "" {
				errs[i] = fmt.Errorf("publish %s: empty message id (an idempotency key is required)", m.Subject)
				continue
			}
			data, err := marshal("publish", m.Subject, m.Msg)
			if err != nil {
				errs[i] = err
				continue
			}
			mctx := m.Ctx
			if mctx == nil {
				mctx = ctx
			}
			f, err := b.js.PublishMsgAsync(b.outgoing(mctx, m.Subject, m.Msg, data), jetstream.WithMsgID(m.ID))
			if err != nil {
				errs[i] = fmt.Errorf("publish %s: %w", m.Subject, err)
				continue
			}
			futures[i-lo] = f
		}
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
					err = fmt.Errorf("%w: %w", ErrNoStream, err)
				}
				errs[lo+i] = fmt.Errorf("publish %s: %w", msgs[lo+i].Subject, err)
			case <-ctx.Done():
				errs[lo+i] = fmt.Errorf("publish %s: %w", msgs[lo+i].Subject, ctx.Err())
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	return errs
}
