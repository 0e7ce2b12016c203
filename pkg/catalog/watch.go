package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Update is one change seen by [Bucket.Watch].
type Update struct {
	// Key that changed. Empty on the Synced marker.
	Key string
	// Revision of the change (the bucket stream's sequence).
	Revision uint64
	// Deleted is true when the key was deleted, purged or expired; Value
	// is then empty.
	Deleted bool
	// Value is the marshalled protobuf; use Decode.
	Value []byte
	// Created is when the change was written.
	Created time.Time
	// Synced marks the one Update, sent after the current values, from
	// which on every Update is a live change. It carries nothing else.
	Synced bool
}

// Decode unmarshals the value into m.
func (u Update) Decode(m proto.Message) error {
	if err := proto.Unmarshal(u.Value, m); err != nil {
		return fmt.Errorf("decode %s: %w", u.Key, err)
	}
	return nil
}

// Watch sends the latest value of every live key under prefix (as in
// [Bucket.List]), then one Update with Synced set, then every later change
// to those keys — deletes included — as it happens, until ctx ends; then
// the channel is closed. The receiver must keep reading: changes are not
// dropped, so a stalled receiver stalls the watch.
func (b *Bucket) Watch(ctx context.Context, prefix string) (<-chan Update, error) {
	w, err := b.kv.WatchFiltered(ctx, filters(prefix))
	if err != nil {
		return nil, fmt.Errorf("watch %s/%s: %w", b.name, prefix, err)
	}
	out := make(chan Update)
	go func() {
		defer close(out)
		defer stopWatcher(w)
		synced := false
		for {
			var u Update
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				switch {
				case e == nil:
					u = Update{Synced: true}
					synced = true
				case !synced && e.Operation() != jetstream.KeyValuePut:
					// A key deleted before the watch began: not a current value.
					continue
				default:
					u = Update{
						Key:      e.Key(),
						Revision: e.Revision(),
						Deleted:  e.Operation() != jetstream.KeyValuePut,
						Value:    e.Value(),
						Created:  e.Created(),
					}
				}
			case <-ctx.Done():
				return
			}
			select {
			case out <- u:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
