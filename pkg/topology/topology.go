// Package topology declares coffer's streams, catalog buckets and durable
// consumers, so that every service sets up the same ones idempotently at
// start, whichever starts first.
package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Streams are the two streams: every event, and the work queue.
var Streams = []bus.StreamSpec{
	{
		Name:        cofferv1.StreamEvents,
		Subjects:    []string{cofferv1.SubjectEvents},
		Retention:   bus.Limits,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Description: "every coffer event",
	},
	{
		Name:        cofferv1.StreamJobs,
		Subjects:    []string{cofferv1.SubjectJobs},
		Retention:   bus.Limits,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Description: "the events of running jobs: progress, commits, failures",
	},
	{
		Name:        cofferv1.StreamWork,
		Subjects:    []string{cofferv1.SubjectWork},
		Retention:   bus.WorkQueue,
		Duplicates:  10 * time.Minute,
		Description: "backup and restore work, each message taken by one streamer worker",
	},
}

// Buckets are the catalog's key-value buckets, each written by one owner
// service (named in the description).
var Buckets = []catalog.BucketSpec{
	{Name: cofferv1.BucketInstances, Description: "registered instances; owner: discovery"},
	{Name: cofferv1.BucketInventory, Description: "databases of each instance; owner: discovery"},
	{Name: cofferv1.BucketProtected, Description: "protected databases; owner: scheduler"},
	{Name: cofferv1.BucketAutoprotect, Description: "auto-protection settings; owner: autoprotect"},
	{Name: cofferv1.BucketRecoveryPoints, Description: "committed recovery points; owner: committer"},
	{Name: cofferv1.BucketJobs, Description: "jobs and their outcome; owner: committer"},
	{Name: cofferv1.BucketPolicies, Description: "backup policies; owner: scheduler"},
	{Name: cofferv1.BucketSchedule, Description: "when each protected database's backups are due; owner: scheduler"},
	{Name: cofferv1.BucketSchedulerLeases, Description: "which scheduler replica queues each partition of the fleet; owner: scheduler"},
	{Name: cofferv1.BucketUsers, Description: "the gateway's users and the hashes of their API tokens; owner: gateway"},
	{Name: cofferv1.BucketAudit, Description: "every request that changed something, or tried to; owner: gateway", TTL: AuditRetention},
	{Name: cofferv1.BucketAlerts, Description: "open and resolved alerts; owner: alerter"},
	{Name: cofferv1.BucketAlertSettings, Description: "which alert rules are on and where alerts go; owner: alerter"},
	{Name: cofferv1.BucketAlertRules, Description: "the alert rules and channels the alerter uses, without secrets, for the dashboard; owner: alerter"},
	{Name: cofferv1.BucketVaults, Description: "named vaults and where their stores are, S3 secrets sealed; owner: committer"},
}

// AuditRetention is how long the audit log keeps an entry.
const AuditRetention = 400 * 24 * time.Hour

// Config is how the streams and buckets are set up.
type Config struct {
	// Replicas is how many copies of each stream and bucket a NATS
	// cluster keeps: 1 on a single server (the default), 3 on a cluster.
	Replicas int
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		return fmt.Errorf("replicas %d: want 1 to %d (1 on a single server, 3 on a cluster)", c.Replicas, MaxReplicas)
	}
	return nil
}

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// Streams are the streams as c sets them up.
func (c Config) Streams() []bus.StreamSpec {
	out := make([]bus.StreamSpec, len(Streams))
	for i, s := range Streams {
		s.Subjects = append([]string(nil), s.Subjects...)
		s.Replicas = max(c.Replicas, 1)
		out[i] = s
	}
	return out
}

// Buckets are the catalog's buckets as c sets them up.
func (c Config) Buckets() []catalog.BucketSpec {
	out := make([]catalog.BucketSpec, len(Buckets))
	for i, b := range Buckets {
		b.Replicas = max(c.Replicas, 1)
		out[i] = b
	}
	return out
}

// Setup creates the streams and buckets, or updates them to match cfg
// when they exist (a process started with another number of replicas
// changes them), and opens the catalog. It is idempotent: every process
// calls it at start, whichever starts first. A change the server refuses
// (more replicas than a single server has) is returned as an error.
//
// A cluster that is still electing its leaders (every process of a fleet
// starting at once, a node restarting) answers with timeouts or not at
// all: Setup tries again, backing off, for up to SetupPatience.
func Setup(ctx context.Context, b *bus.Bus, cfg Config) (*catalog.Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("set up streams: %w", err)
	}
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(SetupPatience))
	var cat *catalog.Catalog
	err := backoff.Retry(func() error {
		var err error
		cat, err = setup(ctx, b, cfg)
		if err != nil && (ctx.Err() != nil || !unavailable(err)) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(bo, ctx))
	return cat, err
}

// SetupPatience is how long Setup waits for JetStream to answer.
const SetupPatience = 2 * time.Minute

func setup(ctx context.Context, b *bus.Bus, cfg Config) (*catalog.Catalog, error) {
	for _, s := range cfg.Streams() {
		if err := b.EnsureStream(ctx, s); err != nil {
			return nil, fmt.Errorf("set up stream %s: %w", s.Name, err)
		}
	}
	cat, err := catalog.Open(ctx, b.JetStream(), cfg.Buckets()...)
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	return cat, nil
}

// unavailable reports whether err says JetStream did not answer in time
// or is not ready yet (10008: temporarily unavailable, as a cluster
// without a leader answers), rather than that it refused.
func unavailable(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode == 10008
	}
	var legacy *nats.APIError
	if errors.As(err, &legacy) {
		return legacy.ErrorCode == 10008
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}
