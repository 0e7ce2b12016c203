package bus

import (
	"context"
	"errors"
	"fmt"
)

// Backlog is the work waiting on one durable consumer, as the server
// reported it.
type Backlog struct {
	Stream, Consumer string
	// Pending counts the messages not yet delivered (num_pending);
	// AckPending those delivered and not yet settled (num_ack_pending).
	Pending, AckPending uint64
}

// Backlog asks the server, once per consumer, for the backlog of every
// consumer this bus is consuming (each Subscription not yet done). A
// consumer that several Subscriptions share is asked once. It returns what
// it could read and the errors of the rest.
func (b *Bus) Backlog(ctx context.Context) ([]Backlog, error) {
	b.mu.Lock()
	seen := map[[2]string]*Subscription{}
	for s := range b.subs {
		seen[[2]string{s.spec.Stream, s.spec.Durable}] = s
	}
	b.mu.Unlock()
	var out []Backlog
	var errs []error
	for k, s := range seen {
		info, err := s.cons.Info(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer %s/%s: %w", k[0], k[1], err))
			continue
		}
		out = append(out, Backlog{Stream: k[0], Consumer: k[1], Pending: info.NumPending, AckPending: uint64(info.NumAckPending)})
	}
	return out, errors.Join(errs...)
}

// track adds s to the running subscriptions, or removes it.
func (b *Bus) track(s *Subscription, running bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !running {
		delete(b.subs, s)
		return
	}
	if b.subs == nil {
		b.subs = map[*Subscription]struct{}{}
	}
	b.subs[s] = struct{}{}
}
