package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/telemetry"
)

// maxDeliveriesAdvisory is the subject on which JetStream says that a
// consumer's message ran out of deliveries without being acknowledged.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s"

// WatchExhausted reports, through Config.OnPoison, the messages of a
// durable consumer that JetStream stops delivering because their last
// allowed delivery ended without an outcome: the worker crashed, hung past
// AckWait or lost its connection each time, so no handler ever returned
// and the usual poison path never ran. Without it such work would vanish
// silently. Consume calls it for every consumer with a MaxDeliver; every
// process that does reports the message, and OnPoison's event id makes
// the reports one. The returned func stops watching.
func (b *Bus) WatchExhausted(stream, durable string) (stop func(), err error) {
	if b.cfg.OnPoison == nil {
		return func() {}, nil
	}
	log := b.cfg.Logger.With(slog.String("stream", stream), slog.String("consumer", durable))
	sub, err := b.nc.Subscribe(fmt.Sprintf(maxDeliveriesAdvisory, stream, durable), func(msg *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.StreamSeq == 0 {
			log.Warn("unreadable max-deliveries advisory", slog.Any("error", err))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.SettleTimeout)
		defer cancel()
		st, err := b.js.Stream(ctx, stream)
		if err != nil {
			log.Error("message ran out of deliveries and cannot be read back", slog.Uint64("stream_seq", adv.StreamSeq), slog.Any("error", err))
			return
		}
		raw, err := st.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			log.Error("message ran out of deliveries and cannot be read back", slog.Uint64("stream_seq", adv.StreamSeq), slog.Any("error", err))
			return
		}
		m := &Message{Subject: raw.Subject, Data: raw.Data, Headers: raw.Header, delivered: adv.Deliveries, streamSeq: adv.StreamSeq}
		if m.Headers == nil {
			m.Headers = nats.Header{}
		}
		err = fmt.Errorf("no worker finished it in %d deliveries: each one stopped, crashed or hung without an outcome", adv.Deliveries)
		log.Error("message ran out of deliveries", slog.String(telemetry.SubjectKey, m.Subject), slog.String("msg_id", m.ID()), slog.Any("error", err))
		b.cfg.OnPoison(ctx, m, err)
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s/%s for exhausted deliveries: %w", stream, durable, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
