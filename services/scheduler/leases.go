package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// leases shares the fleet's partitions among the scheduler replicas that
// run, through bucket scheduler_leases: a key per partition names the
// replica that holds it, and a key per replica ("member", its owner id)
// says it is alive. A holder renews its leases every fifth of the lease
// time; a lease, or a member, is taken for dead when its value has not
// changed for a whole lease time as the observer's own clock measures it,
// so replicas need not agree on the time of day. Each replica holds its
// share, the partitions divided by the replicas alive, rounded up: one
// that holds more releases the rest, one that holds less takes free or
// dead leases. Every take and renewal is a compare-and-set on the lease's
// revision.
//
// A lease only shares the work: a replica that still believes it holds a
// partition it lost can do no harm, because each schedule is updated by
// compare-and-set before its backup is queued, and job ids and message ids
// are derived from the slot.
type leases struct {
	bucket *catalog.Bucket
	owner  string
	ttl    time.Duration
	logger *slog.Logger

	mu sync.Mutex
	// held is when the renewal of each partition held started: the lease
	// is ours until then plus ttl, less a margin
	held map[int]time.Time
	rev  map[int]uint64 // revision of each lease held
	// seen is, per key of the bucket, the value last read and when it was
	// first read so
	seen      map[string]seenValue
	ready     chan struct{} // closed after the first round
	readyOnce sync.Once
}

type seenValue struct {
	value string
	at    time.Time
}

// newLeases returns the leases of the replica called owner ("" for its
// host name and a random id).
func newLeases(b *catalog.Bucket, owner string, ttl time.Duration, logger *slog.Logger) *leases {
	if owner == "" {
		owner = replicaName()
	}
	return &leases{bucket: b, owner: owner, ttl: ttl, logger: logger, held: map[int]time.Time{}, rev: map[int]uint64{},
		seen: map[string]seenValue{}, ready: make(chan struct{})}
}

// replicaName is the host's name and a random id: a replica started again
// is a new one.
func replicaName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "scheduler"
	}
	var b [4]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail
	return host + "-" + hex.EncodeToString(b[:])
}

func partitionKey(p int) string { return catalog.Key("partition", fmt.Sprintf("%02d", p)) }

func memberKey(owner string) string { return catalog.Key("member", owner) }

// run renews and balances the leases every fifth of the lease time until
// ctx ends, then releases them so that another replica takes them at
// once.
func (l *leases) run(ctx context.Context) {
	t := time.NewTicker(l.ttl / 5)
	defer t.Stop()
	for {
		if err := l.round(ctx); err != nil && ctx.Err() == nil {
			l.logger.WarnContext(ctx, "scheduler leases not renewed; partitions whose lease runs out are left to other replicas", "err", err)
		}
		l.readyOnce.Do(func() { close(l.ready) })
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.release(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// owned lists the partitions this replica holds now, in order.
func (l *leases) owned() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var out []int
	for p, at := range l.held {
		if now.Before(at.Add(l.ttl - l.ttl/6)) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// waitReady waits for the first round of leases.
func (l *leases) waitReady(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the scheduler's leases: %w", ctx.Err())
	}
}

// lease is one lease as a round reads it.
type lease struct {
	rev   uint64 // 0: never written
	owner string
	dead  bool // free, released, or not renewed for a lease time
}

// round reads every lease and member, says this replica is alive, renews
// its leases or releases what is above its share, and takes free ones up
// to its share.
func (l *leases) round(ctx context.Context) error {
	now := time.Now()
	if err := l.announce(ctx, now); err != nil {
		return err
	}
	values := map[string]*cofferv1.SchedulerLease{}
	err := l.bucket.List(ctx, "", func() proto.Message { return &cofferv1.SchedulerLease{} }, func(key string, m proto.Message) error {
		values[key] = m.(*cofferv1.SchedulerLease)
		return nil
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	alive := map[string]bool{l.owner: true}
	fresh := map[string]seenValue{}
	for key, v := range values {
		val := v.GetOwner() + "@" + v.GetExpires().AsTime().String()
		sv, ok := l.seen[key]
		if !ok || sv.value != val {
			sv = seenValue{value: val, at: now}
		}
		fresh[key] = sv
		if strings.HasPrefix(key, "member.") && now.Sub(sv.at) < l.ttl && v.GetOwner() != "" {
			alive[v.GetOwner()] = true
		}
	}
	l.seen = fresh
	var gone []string // members dead for ten lease times: replicas that were killed
	for key, sv := range fresh {
		if strings.HasPrefix(key, "member.") && now.Sub(sv.at) >= 10*l.ttl {
			gone = append(gone, key)
		}
	}
	parts := make([]lease, partitions)
	for p := range parts {
		v, ok := values[partitionKey(p)]
		if !ok {
			parts[p] = lease{dead: true}
			continue
		}
		parts[p] = lease{owner: v.GetOwner(), dead: v.GetOwner() == "" || now.Sub(fresh[partitionKey(p)].at) >= l.ttl}
		if !parts[p].dead {
			alive[v.GetOwner()] = true
		}
	}
	share := (partitions + len(alive) - 1) / len(alive)
	var mine []int
	for p := range l.held {
		mine = append(mine, p)
	}
	l.mu.Unlock()
	slices.Sort(mine)

	var errs []error
	for _, key := range gone {
		errs = append(errs, l.bucket.Delete(ctx, key))
	}
	kept := 0
	for _, p := range mine {
		if kept >= share {
			errs = append(errs, l.releaseOne(ctx, p))
			continue
		}
		if err := l.renew(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		kept++
	}
	// take free or dead leases up to the share, starting at a place of
	// this replica's own so that replicas starting together try
	// different ones first
	start := partitionOf(l.owner)
	for i := range partitions {
		if kept >= share {
			break
		}
		p := (start + i) % partitions
		l.mu.Lock()
		_, have := l.held[p]
		l.mu.Unlock()
		if have || !parts[p].dead {
			continue
		}
		ok, err := l.take(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			kept++
		}
	}
	return errors.Join(errs...)
}

// announce writes this replica's member key, a new value each round.
func (l *leases) announce(ctx context.Context, now time.Time) error {
	m := &cofferv1.SchedulerLease{Owner: l.owner, Expires: timestamppb.New(now.Add(l.ttl))}
	_, err := l.bucket.Put(ctx, memberKey(l.owner), m)
	return err
}

// renew extends this replica's lease on p; losing the compare-and-set
// means another replica took it.
func (l *leases) renew(ctx context.Context, p int) error {
	l.mu.Lock()
	rev := l.rev[p]
	l.mu.Unlock()
	start := time.Now()
	next, err := l.bucket.Update(ctx, partitionKey(p), &cofferv1.SchedulerLease{Owner: l.owner, Expires: timestamppb.New(start.Add(l.ttl))}, rev)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, catalog.ErrConflict):
		delete(l.held, p)
		delete(l.rev, p)
		l.logger.InfoContext(ctx, "scheduler partition taken by another replica", "partition", p)
		return nil
	case err != nil:
		return err
	}
	l.held[p], l.rev[p] = start, next
	return nil
}

// take takes the free or dead lease on p, reporting whether it did.
func (l *leases) take(ctx context.Context, p int) (bool, error) {
	start := time.Now()
	val := &cofferv1.SchedulerLease{Owner: l.owner, Expires: timestamppb.New(start.Add(l.ttl))}
	var cur cofferv1.SchedulerLease
	rev, err := l.bucket.Get(ctx, partitionKey(p), &cur)
	var next uint64
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		next, err = l.bucket.Create(ctx, partitionKey(p), val)
	case err != nil:
		return false, err
	default:
		next, err = l.bucket.Update(ctx, partitionKey(p), val, rev)
	}
	if errors.Is(err, catalog.ErrConflict) || errors.Is(err, catalog.ErrExists) {
		return false, nil // another replica was quicker
	}
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	l.held[p], l.rev[p] = start, next
	l.mu.Unlock()
	if cur.GetOwner() != "" {
		l.logger.InfoContext(ctx, "scheduler partition taken over", "partition", p, "from", cur.GetOwner())
	}
	return true, nil
}

// releaseOne gives up the lease on p, marking it free for another replica
// to take at once.
func (l *leases) releaseOne(ctx context.Context, p int) error {
	l.mu.Lock()
	rev := l.rev[p]
	delete(l.held, p)
	delete(l.rev, p)
	l.mu.Unlock()
	_, err := l.bucket.Update(ctx, partitionKey(p), &cofferv1.SchedulerLease{}, rev)
	if errors.Is(err, catalog.ErrConflict) {
		return nil
	}
	return err
}

// release gives up every lease and the member key, at shutdown.
func (l *leases) release(ctx context.Context) {
	l.mu.Lock()
	var mine []int
	for p := range l.held {
		mine = append(mine, p)
	}
	l.mu.Unlock()
	for _, p := range mine {
		if err := l.releaseOne(ctx, p); err != nil {
			l.logger.WarnContext(ctx, "scheduler lease not released; another replica takes it when it runs out", "partition", p, "err", err)
		}
	}
	if err := l.bucket.Delete(ctx, memberKey(l.owner)); err != nil {
		l.logger.WarnContext(ctx, "scheduler member key not deleted", "err", err)
	}
}
