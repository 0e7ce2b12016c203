package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retention says when a stream may discard a message.
type Retention int

const (
	// Limits keeps messages until MaxAge (or other limits) expire them:
	// events any number of services read.
	Limits Retention = iota
	// WorkQueue removes a message once one consumer acknowledges it: work
	// shared by a pool of workers. Consumers of one work-queue stream must
	// not overlap in subjects.
	WorkQueue
	// Interest removes a message once every consumer that existed when it
	// was stored has acknowledged it; a message published while no consumer
	// exists is discarded at once.
	Interest
)

func (r Retention) String() string {
	switch r {
	case Limits:
		return "limits"
	case WorkQueue:
		return "workqueue"
	case Interest:
		return "interest"
	default:
		return fmt.Sprintf("Retention(%d)", int(r))
	}
}

// Storage says where a stream keeps its messages.
type Storage int

const (
	// FileStorage survives a server restart.
	FileStorage Storage = iota
	// MemoryStorage does not.
	MemoryStorage
)

func (s Storage) String() string {
	switch s {
	case FileStorage:
		return "file"
	case MemoryStorage:
		return "memory"
	default:
		return fmt.Sprintf("Storage(%d)", int(s))
	}
}

// StreamSpec describes a stream. The spec is the whole truth: settings it
// leaves zero get the server defaults, also on update.
type StreamSpec struct {
	// Name is the stream name: letters, digits, '-' and '_'.
	Name string
	// Subjects the stream captures; wildcards allowed.
	Subjects []string
	// Retention policy; default Limits.
	Retention Retention
	// MaxAge discards messages older than this; 0 keeps them forever.
	MaxAge time.Duration
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped;
	// 0 means the server default (2 minutes, capped at MaxAge).
	Duplicates time.Duration
	// Storage backend; default FileStorage.
	Storage Storage
	// Replicas in a cluster; default 1.
	Replicas int
	// Description is shown by `nats stream info`.
	Description string
}

// Validate reports every problem with s at once.
func (s StreamSpec) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("stream name is required"))
	}
	if len(s.Subjects) == 0 {
		errs = append(errs, errors.New("at least one subject is required"))
	}
	if s.Retention < Limits || s.Retention > Interest {
		errs = append(errs, fmt.Errorf("unknown retention %v", s.Retention))
	}
	if s.Storage < FileStorage || s.Storage > MemoryStorage {
		errs = append(errs, fmt.Errorf("unknown storage %v", s.Storage))
	}
	if s.MaxAge < 0 || s.Duplicates < 0 {
		errs = append(errs, errors.New("negative max age or duplicates window"))
	}
	if s.Replicas < 0 {
		errs = append(errs, fmt.Errorf("negative replicas %d", s.Replicas))
	}
	return errors.Join(errs...)
}

func (s StreamSpec) config() jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        s.Name,
		Description: s.Description,
		Subjects:    s.Subjects,
		MaxAge:      s.MaxAge,
		Duplicates:  s.Duplicates,
		Replicas:    max(s.Replicas, 1),
	}
	switch s.Retention {
	case WorkQueue:
		cfg.Retention = jetstream.WorkQueuePolicy
	case Interest:
		cfg.Retention = jetstream.InterestPolicy
	default:
		cfg.Retention = jetstream.LimitsPolicy
	}
	if s.Storage == MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	return cfg
}

// EnsureStream creates the stream, or updates it to match spec when it
// exists. It is idempotent: every service that publishes or consumes a
// stream may call it at start. A change the server does not allow in place
// (storage type, for instance) is returned as an error.
func (b *Bus) EnsureStream(ctx context.Context, spec StreamSpec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("ensure stream %s: %w", spec.Name, err)
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, spec.config()); err != nil {
		return fmt.Errorf("ensure stream %s: %w", spec.Name, err)
	}
	return nil
}
