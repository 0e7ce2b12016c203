package committer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cofferhq/coffer/pkg/metrics"
)

// Config configures the committer. The zero value of every field but the
// ones Validate names means its default.
type Config struct {
	// Workers is how many events are handled at once. Default 4. Job
	// updates are compare-and-set, so handlers may race freely.
	Workers int
	// AckWait is how long JetStream waits for a handler before it
	// redelivers the event; the bus extends it while a handler runs.
	// Default 1m.
	AckWait time.Duration
	// MaxDeliver is how many times an event is tried before it is
	// poison (reported by the bus's OnPoison). Default 20.
	MaxDeliver int
	// Backoff is the delay before each redelivery after a transient
	// failure (the vault or NATS unreachable). Default 1s, 5s, 15s, 30s,
	// 1m, the last repeating.
	Backoff []time.Duration
	// DrainTimeout bounds the wait for running handlers at shutdown.
	// Default 30s.
	DrainTimeout time.Duration
	// GCInterval is how often unreferenced chunks are collected; default
	// 1h. GCTicks, when not nil, replaces the timer (tests).
	GCInterval time.Duration
	GCTicks    <-chan time.Time
	// CopyInterval is how often the recovery points are swept for second
	// copies that are due (a policy's copy rule); default 1m. CopyTicks,
	// when not nil, replaces the timer (tests).
	CopyInterval time.Duration
	CopyTicks    <-chan time.Time
	// GCGrace is the least time, by the vault store's clock, between
	// the collection that condemns unreferenced chunks and the one that
	// deletes them. Default 0: the next collection deletes them, once
	// every backup that started before they were condemned has ended.
	GCGrace time.Duration
	// DraftTTL is how old, by the vault store's clock, the draft of a
	// backup that never committed must be before garbage collection
	// deletes it (its chunks then go the way of any garbage). A commit
	// deletes its draft, so one left this long belongs to a backup that
	// nothing will commit any more: the committer had days, across
	// redeliveries and restarts, to commit it. Default 7 days.
	DraftTTL time.Duration
	// SoftDeleteDays is how many days a recovery point a person deleted
	// stays restorable (an undelete brings it back) before garbage
	// collection deletes it for good. Default 14.
	SoftDeleteDays int
	// JobRetention is how long a finished job's record is kept; older
	// ones are deleted at each collection. Default 90 days.
	JobRetention time.Duration
	// MasterKey opens the named vaults (coffer vault create NAME) and
	// their sealed S3 secrets; without it only the default vault is
	// served.
	MasterKey []byte
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the service's records; default discard.
	Logger *slog.Logger
	// TracerProvider makes the service's spans; default no-op.
	TracerProvider trace.TracerProvider
	// Metrics counts the jobs' outcomes and what commits add to the
	// vault; nil records nothing.
	Metrics *metrics.Metrics
}

func (c *Config) setDefaults() {
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.GCInterval == 0 {
		c.GCInterval = time.Hour
	}
	if c.CopyInterval == 0 {
		c.CopyInterval = time.Minute
	}
	if c.DraftTTL == 0 {
		c.DraftTTL = 7 * 24 * time.Hour
	}
	if c.SoftDeleteDays == 0 {
		c.SoftDeleteDays = 14
	}
	if c.JobRetention == 0 {
		c.JobRetention = 90 * 24 * time.Hour
	}
	if c.AckWait == 0 {
		c.AckWait = time.Minute
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 20
	}
	if c.Backoff == nil {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: want at least 1", c.Workers))
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("ack wait %v: want a positive duration", c.AckWait))
	} else if c.AckWait > 0 && c.AckWait < 3*time.Millisecond {
		errs = append(errs, fmt.Errorf("ack wait %v: too short to signal progress", c.AckWait))
	}
	if c.MaxDeliver < -1 {
		errs = append(errs, fmt.Errorf("max deliver %d: want -1 (unlimited) or at least 1", c.MaxDeliver))
	}
	for i, d := range c.Backoff {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("backoff[%d] %v: want a positive duration", i, d))
		}
	}
	if c.GCGrace < 0 {
		errs = append(errs, fmt.Errorf("gc grace %v: want zero or a positive duration", c.GCGrace))
	}
	if c.DraftTTL < 0 {
		errs = append(errs, fmt.Errorf("draft ttl %v: want a positive duration", c.DraftTTL))
	}
	if c.SoftDeleteDays < 0 {
		errs = append(errs, fmt.Errorf("soft delete days %d: want at least 1", c.SoftDeleteDays))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %v: want a positive duration", c.DrainTimeout))
	}
	return errors.Join(errs...)
}

// softDeleteWindow is how long a deleted recovery point stays restorable.
func (c Config) softDeleteWindow() time.Duration {
	return time.Duration(c.SoftDeleteDays) * 24 * time.Hour
}
