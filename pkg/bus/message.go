package bus

import (
	"fmt"
	"mime"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Message is one delivery of a stored event to a handler.
type Message struct {
	// Subject the event was published on.
	Subject string
	// Data is the marshalled protobuf payload.
	Data []byte
	// Headers as published, including Nats-Msg-Id, Content-Type and the
	// trace context.
	Headers nats.Header

	delivered uint64
	streamSeq uint64
}

func newMessage(jm jetstream.Msg) *Message {
	m := &Message{Subject: jm.Subject(), Data: jm.Data(), Headers: jm.Headers()}
	if m.Headers == nil {
		m.Headers = nats.Header{}
	}
	if md, err := jm.Metadata(); err == nil {
		m.delivered = md.NumDelivered
		m.streamSeq = md.Sequence.Stream
	}
	return m
}

// ID is the message's idempotency key (Nats-Msg-Id) as the publisher set it.
func (m *Message) ID() string { return m.Headers.Get(jetstream.MsgIDHeader) }

// Delivered is how many times this message has been delivered, this
// delivery included (1 on the first).
func (m *Message) Delivered() uint64 { return m.delivered }

// Sequence is the message's sequence number in its stream.
func (m *Message) Sequence() uint64 { return m.streamSeq }

// Type is the full protobuf name the publisher declared for the payload, or
// "" when the message carries no protobuf content type.
func (m *Message) Type() string {
	mt, params, err := mime.ParseMediaType(m.Headers.Get(contentTypeHeader))
	if err != nil || mt != protobufMediaType {
		return ""
	}
	return params["proto"]
}

// Decode unmarshals the payload into pm. It fails with an error wrapping
// [ErrMalformed] when the declared type is not pm's type or the payload does
// not parse; a handler that returns that error gets the message terminated
// rather than redelivered.
func (m *Message) Decode(pm proto.Message) error {
	want := string(pm.ProtoReflect().Descriptor().FullName())
	if got := m.Type(); got != "" && got != want {
		return fmt.Errorf("decode %s message %q: got type %s, want %s: %w", m.Subject, m.ID(), got, want, ErrMalformed)
	}
	if err := proto.Unmarshal(m.Data, pm); err != nil {
		return fmt.Errorf("decode %s message %q as %s: %w: %w", m.Subject, m.ID(), want, ErrMalformed, err)
	}
	return nil
}
