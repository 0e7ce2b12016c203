// Package scheduler decides which backup is due for each protected
// database and queues it as work for the backup-streamer. It owns the
// "protected" bucket.
//
// It records protection, queues the first full backup after protection,
// turns on-demand requests into queued work, keeps backup policies (bucket
// "policies"), and on each tick of its clock queues the full, differential
// and log backups each protected database's policy makes due (bucket
// "schedule"), turning a differential or log into a full where the chain
// needs one.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// DefaultPolicy is the policy a protection without one gets.
const DefaultPolicy = policy.DefaultName

// Config configures the scheduler.
type Config struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Now            func() time.Time
	// DrainTimeout bounds the wait for in-flight handlers at shutdown.
	DrainTimeout time.Duration
	// TickInterval is how often due backups are queued. Default 15s.
	TickInterval time.Duration
	// Ticks, when not nil, replaces the timer: each value is a tick at that
	// time. Tests drive weeks of schedule through it.
	Ticks <-chan time.Time
	// MaxConcurrentPerInstance bounds the backups queued and running per
	// instance. Default 20, the reference product's limit.
	MaxConcurrentPerInstance int
	// RetentionInterval is how often expired recovery points are looked
	// for. Default 1h.
	RetentionInterval time.Duration
	// Metrics gets the RPO lag of every protected database at each
	// scrape; nil records nothing.
	Metrics *metrics.Metrics
	// LeaseTTL is how long a replica holds a partition of the fleet
	// without renewing it; it renews every fifth of it. A replica that
	// dies loses its partitions to the others within LeaseTTL and a fifth
	// of it. Default 5s.
	LeaseTTL time.Duration
	// Replica names this replica in the leases; default its host name and
	// a random id.
	Replica string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.TickInterval == 0 {
		c.TickInterval = 15 * time.Second
	}
	if c.MaxConcurrentPerInstance == 0 {
		c.MaxConcurrentPerInstance = 20
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Hour
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 5 * time.Second
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.DrainTimeout < 0 {
		errs = append(errs, errors.New("drain timeout must not be negative"))
	}
	if c.TickInterval < 0 {
		errs = append(errs, errors.New("tick interval must not be negative"))
	}
	if c.MaxConcurrentPerInstance < 0 {
		errs = append(errs, errors.New("max concurrent backups per instance must not be negative"))
	}
	if c.LeaseTTL < 0 {
		errs = append(errs, errors.New("lease time must not be negative"))
	}
	return errors.Join(errs...)
}

// Service is the scheduler.
type Service struct {
	cfg       Config
	bus       *bus.Bus
	protected *catalog.Bucket
	inventory *catalog.Bucket
	policies  *catalog.Bucket
	schedule  *catalog.Bucket
	rps       *catalog.Bucket
	jobs      *catalog.Bucket // read only: the committer owns it

	sweepMu   sync.Mutex
	lastSweep time.Time

	tracer trace.Tracer
	last   lastBackups // for RPOLag
	fleet  *fleet      // what ticks read
	leases *leases     // the partitions of the fleet this replica ticks
	// lookedAt counts the databases ticks have looked at, for tests
	lookedAt atomic.Int64
	// kicks asks Run for a tick before the next of its timer: a backup
	// ended, so its instance has a slot free. Nil when Config.Ticks drives
	// the ticks (tests choose every tick).
	kicks chan struct{}
}

// kickDelay is how soon after a backup ends a tick runs: the backups due
// and waiting for a slot on its instance go then, not at the next tick
// of the timer. Kicks within it share one tick.
const kickDelay = time.Second

// kick asks for a tick soon, when Run's timer drives the ticks.
func (s *Service) kick() {
	if s.kicks == nil {
		return
	}
	select {
	case s.kicks <- struct{}{}:
	default: // a tick is asked for already
	}
}

const tracerName = "github.com/cofferhq/coffer/services/scheduler"

// New returns a scheduler publishing on b and keeping state in cat.
func New(b *bus.Bus, cat *catalog.Catalog, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	s := &Service{cfg: cfg, bus: b, protected: cat.Bucket(cofferv1.BucketProtected),
		inventory: cat.Bucket(cofferv1.BucketInventory), policies: cat.Bucket(cofferv1.BucketPolicies),
		schedule: cat.Bucket(cofferv1.BucketSchedule), rps: cat.Bucket(cofferv1.BucketRecoveryPoints),
		jobs: cat.Bucket(cofferv1.BucketJobs), tracer: cfg.TracerProvider.Tracer(tracerName)}
	s.fleet = newFleet(cfg.Logger, s.schedule, s.protected, s.inventory, s.policies)
	if cfg.Ticks == nil {
		s.kicks = make(chan struct{}, 1)
	}
	s.leases = newLeases(cat.Bucket(cofferv1.BucketSchedulerLeases), cfg.Replica, cfg.LeaseTTL, cfg.Logger)
	cfg.Metrics.WatchRPO(s)
	return s, nil
}

// Run consumes the scheduler's events until ctx is done, then drains.
// Beside them it follows the catalog (the fleet ticks read) and holds its
// share of the fleet's partitions.
func (s *Service) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	for _, b := range s.fleet.buckets {
		wg.Go(func() { s.fleet.follow(bg, b) })
	}
	wg.Go(func() { s.leases.run(bg) })
	// commands and changes, one at a time in stream order: a backup
	// requested right after a protection must see the protection
	sub, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:  cofferv1.StreamEvents,
		Durable: "scheduler",
		FilterSubjects: []string{
			cofferv1.SubjectProtectionRequested,
			cofferv1.SubjectUnprotectRequested,
			cofferv1.SubjectBackupOnDemand,
			cofferv1.SubjectDatabaseDropped,
			cofferv1.SubjectPolicyPutRequested,
			cofferv1.SubjectPolicyDeleteRequested,
		},
		Concurrency: 1,
		// one at a time across replicas too: the consumer is shared
		MaxAckPending: 1,
	}, s.handle)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean shutdown
		}
		return fmt.Errorf("scheduler: consume: %w", err)
	}
	// the outcomes of backups, in order: a broken chain is reported before
	// the full that heals it commits
	jobs, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:  cofferv1.StreamJobs,
		Durable: "scheduler-jobs",
		FilterSubjects: []string{
			cofferv1.SubjectRecoveryPointCommitted,
			cofferv1.SubjectJobFailed,
			cofferv1.SubjectChainBroken,
			cofferv1.SubjectVerifyCompleted,
		},
		Concurrency:   1,
		MaxAckPending: 1,
	}, s.handle)
	if err != nil {
		sub.Stop()
		return fmt.Errorf("scheduler: consume: %w", err)
	}
	ticks := s.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(s.cfg.TickInterval)
		defer t.Stop()
		ticks = t.C
	}
	tick := func(now time.Time) {
		if err := s.Tick(ctx, now); err != nil && ctx.Err() == nil {
			s.cfg.Logger.ErrorContext(ctx, "tick failed; due backups stay due", "err", err)
		}
	}
	var soon <-chan time.Time // an extra tick a kick asked for
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-ticks:
			tick(now)
		case <-s.kicks:
			if soon == nil {
				soon = time.After(kickDelay)
			}
		case <-soon:
			soon = nil
			tick(s.cfg.Now())
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	return errors.Join(sub.Drain(dctx), jobs.Drain(dctx))
}

func (s *Service) handle(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case cofferv1.SubjectProtectionRequested:
		var ev cofferv1.ProtectionRequested
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.protect(ctx, m.ID(), &ev)
	case cofferv1.SubjectUnprotectRequested:
		var ev cofferv1.UnprotectRequested
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.unprotect(ctx, ev.GetDatabase())
	case cofferv1.SubjectBackupOnDemand:
		var ev cofferv1.BackupOnDemandRequested
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.onDemand(ctx, &ev)
	case cofferv1.SubjectDatabaseDropped:
		var ev cofferv1.DatabaseDropped
		if err := m.Decode(&ev); err != nil {
			return err
		}
		s.cfg.Logger.InfoContext(ctx, "protected database dropped; its recovery points stay",
			"instance", ev.GetInstance(), "database", ev.GetDatabase())
		return nil
	case cofferv1.SubjectPolicyPutRequested:
		var ev cofferv1.PolicyPutRequested
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.putPolicy(ctx, &ev)
	case cofferv1.SubjectPolicyDeleteRequested:
		var ev cofferv1.PolicyDeleteRequested
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.deletePolicy(ctx, &ev)
	case cofferv1.SubjectRecoveryPointCommitted:
		var ev cofferv1.RecoveryPointCommitted
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.committed(ctx, ev.GetRecoveryPoint())
	case cofferv1.SubjectJobFailed:
		var ev cofferv1.JobFailed
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.jobFailed(ctx, &ev)
	case cofferv1.SubjectVerifyCompleted:
		var ev cofferv1.VerifyCompleted
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.verified(ctx, &ev)
	case cofferv1.SubjectChainBroken:
		var ev cofferv1.ChainBroken
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.chainBroken(ctx, &ev)
	}
	return bus.Permanent(fmt.Errorf("unexpected subject %s", m.Subject))
}

// refusal is a reason a protection cannot be configured.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

// check validates a protection request against the inventory.
func (s *Service) check(ctx context.Context, ref *cofferv1.DatabaseRef, name string) (*policy.Policy, *cofferv1.DatabaseInfo, error) {
	p, ok, err := s.lookupPolicy(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, &refusal{fmt.Sprintf("unknown policy %q (coffer policy list)", name)}
	}
	var db cofferv1.DatabaseInfo
	if _, err := s.inventory.Get(ctx, catalog.Key(ref.GetInstance(), ref.GetDatabase()), &db); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, nil, &refusal{fmt.Sprintf("database %q is not known on instance %q: run discovery (coffer instance discover %s)",
				ref.GetDatabase(), ref.GetInstance(), ref.GetInstance())}
		}
		return nil, nil, err
	}
	switch {
	case db.GetSnapshot():
		return nil, nil, &refusal{fmt.Sprintf("%q is a database snapshot, which cannot be backed up", db.GetName())}
	case db.GetName() == "tempdb":
		return nil, nil, &refusal{"tempdb cannot be backed up"}
	}
	return p, &db, nil
}

func (s *Service) protect(ctx context.Context, msgID string, ev *cofferv1.ProtectionRequested) error {
	ref := ev.GetDatabase()
	policy := ev.GetPolicy()
	if policy == "" {
		policy = DefaultPolicy
	}
	key := catalog.Key(ref.GetInstance(), ref.GetDatabase())
	pol, db, err := s.check(ctx, ref, policy)
	if err != nil {
		var r *refusal
		if !errors.As(err, &r) {
			return err
		}
		s.cfg.Logger.InfoContext(ctx, "protection refused", "instance", ref.GetInstance(), "database", ref.GetDatabase(), "reason", r.reason)
		if err := s.recordRefusal(ctx, key, ref, policy, r.reason); err != nil {
			return err
		}
		f := &cofferv1.ProtectionFailed{Meta: event.Meta(event.ID("protection-failed", msgID), ev.GetMeta().GetJobId(), s.cfg.Now()),
			Database: ref, Reason: r.reason, Attempt: ev.GetAttempt(), RequestedBy: ev.GetRequestedBy(), Policy: policy}
		return s.bus.Publish(ctx, cofferv1.SubjectProtectionFailed, f, f.Meta.EventId)
	}
	requested := ev.GetMeta().GetTime().AsTime()
	var item cofferv1.ProtectedItem
	_, err = s.protected.Get(ctx, key, &item)
	via, verr := s.protectedReplica(ctx, ref, db)
	confirmed := &item
	switch {
	case verr != nil:
		return verr
	case via != nil && !(err == nil && item.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED):
		// another replica of its availability group is protected: the
		// group database is already backed up, on the replica its
		// preference names; a second protection would split its chain
		s.cfg.Logger.InfoContext(ctx, "availability group database already protected through another replica",
			"instance", ref.GetInstance(), "database", ref.GetDatabase(), "protected_as", via.GetDatabase().GetInstance())
		confirmed = via
	case err == nil && item.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED:
		// already protected: confirm again (idempotent), queue nothing new
	case err == nil || errors.Is(err, catalog.ErrNotFound):
		item = cofferv1.ProtectedItem{
			Database:     ref,
			Policy:       policy,
			State:        cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED,
			ProtectedAt:  timestamppb.New(requested),
			FirstFullJob: event.DerivedJobID(requested, "first-full", msgID),
			RequestedBy:  ev.GetRequestedBy(),
			Vault:        ev.GetVault(),
		}
		if _, err := s.protected.Put(ctx, key, &item); err != nil {
			return err
		}
		if err := s.startSchedule(ctx, ref, pol, item.FirstFullJob, s.cfg.Now()); err != nil {
			return err
		}
		if err := s.queueBackup(ctx, item.FirstFullJob, ref, cofferv1.BackupType_BACKUP_TYPE_FULL, "first-full", pol.Compression, nil, "", item.GetVault()); err != nil {
			return err
		}
	default:
		return err
	}
	c := &cofferv1.ProtectionConfigured{Meta: event.Meta(event.ID("protection-configured", msgID), "", s.cfg.Now()),
		Item: confirmed, Attempt: ev.GetAttempt()}
	s.cfg.Logger.InfoContext(ctx, "database protected", "instance", ref.GetInstance(), "database", ref.GetDatabase(), "policy", policy)
	return s.bus.Publish(ctx, cofferv1.SubjectProtectionConfigured, c, c.Meta.EventId)
}

// recordRefusal records a refused protection on a database that is not
// protected, so that the user sees why (coffer db list).
func (s *Service) recordRefusal(ctx context.Context, key string, ref *cofferv1.DatabaseRef, policy, reason string) error {
	var item cofferv1.ProtectedItem
	_, err := s.protected.Get(ctx, key, &item)
	switch {
	case err == nil && item.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED:
		return nil // a refused change leaves an existing protection alone
	case err != nil && !errors.Is(err, catalog.ErrNotFound):
		return err
	}
	item = cofferv1.ProtectedItem{Database: ref, Policy: policy, State: cofferv1.ProtectionState_PROTECTION_STATE_FAILED, LastError: reason}
	_, err = s.protected.Put(ctx, key, &item)
	return err
}

func (s *Service) unprotect(ctx context.Context, ref *cofferv1.DatabaseRef) error {
	key := catalog.Key(ref.GetInstance(), ref.GetDatabase())
	var item cofferv1.ProtectedItem
	rev, err := s.protected.Get(ctx, key, &item)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	item.State = cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED
	if _, err := s.protected.Update(ctx, key, &item, rev); err != nil {
		return err // a conflict is retried by redelivery
	}
	s.cfg.Logger.InfoContext(ctx, "protection stopped; recovery points stay", "instance", ref.GetInstance(), "database", ref.GetDatabase())
	return nil
}

func (s *Service) onDemand(ctx context.Context, ev *cofferv1.BackupOnDemandRequested) error {
	ref := ev.GetDatabase()
	jobID := ev.GetMeta().GetJobId()
	if jobID == "" {
		return bus.Permanent(errors.New("on-demand backup request without a job id"))
	}
	var item cofferv1.ProtectedItem
	_, err := s.protected.Get(ctx, catalog.Key(ref.GetInstance(), ref.GetDatabase()), &item)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	if err != nil || item.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
		f := &cofferv1.JobFailed{Meta: event.Meta(event.ID("job-failed", jobID), jobID, s.cfg.Now()),
			Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: ref, BackupType: ev.GetType(), Service: "scheduler",
			Reason: fmt.Sprintf("%s/%s is not protected: protect it first (coffer protect %s/%s)",
				ref.GetInstance(), ref.GetDatabase(), ref.GetInstance(), ref.GetDatabase())}
		return s.bus.Publish(ctx, cofferv1.SubjectJobFailed, f, f.Meta.EventId)
	}
	p, _, err := s.lookupPolicy(ctx, item.GetPolicy())
	if err != nil {
		return err
	}
	compress := policy.Zstd
	if p != nil {
		compress = p.Compression.OrDefault()
	}
	var chain cofferv1.ScheduleState
	if _, err := s.schedule.Get(ctx, catalog.Key(ref.GetInstance(), ref.GetDatabase()), &chain); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	heal := ""
	// before the first full there is no chain to break: a full that is
	// not the first heals nothing (two fulls taken at once must not show a
	// break between them)
	if chain.GetNeedsFull() && chain.GetLastFull() != "" && (ev.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL) {
		heal = chain.GetNeedsFullReason()
	}
	return s.queueBackup(ctx, jobID, ref, ev.GetType(), "on-demand", compress, &chain, heal, item.GetVault())
}

// queueBackup records the job as queued and puts the work on the queue.
// chainBreak, on a full, is why the chain it heals broke; vault is the
// protection's vault ("": the default).
func (s *Service) queueBackup(ctx context.Context, jobID string, ref *cofferv1.DatabaseRef, typ cofferv1.BackupType, reason string, compression policy.Compression, chain *cofferv1.ScheduleState, chainBreak, vault string) error {
	on, refused, err := s.route(ctx, ref, typ)
	if err != nil {
		return err
	}
	return s.queueOn(ctx, on, refused, jobID, ref, typ, reason, compression, chain, chainBreak, vault)
}

// queueOn is queueBackup with the backup already routed: on and refused
// are what route returned for it.
func (s *Service) queueOn(ctx context.Context, on, refused, jobID string, ref *cofferv1.DatabaseRef, typ cofferv1.BackupType, reason string, compression policy.Compression, chain *cofferv1.ScheduleState, chainBreak, vault string) error {
	d := s.backupMessages(ctx, on, refused, jobID, ref, typ, reason, compression, chain, chainBreak, vault)
	if err := s.bus.Publish(ctx, d.queued.Subject, d.queued.Msg, d.queued.ID); err != nil {
		return err
	}
	if err := s.bus.Publish(ctx, d.then.Subject, d.then.Msg, d.then.ID); err != nil {
		return err
	}
	d.log(ctx, s.cfg.Logger)
	return nil
}

// dispatch is a backup to queue: its JobQueued, then its work, or its
// failure when no instance may take it.
type dispatch struct {
	queued, then bus.Outgoing
	refused      string
	ref          *cofferv1.DatabaseRef
	typ          cofferv1.BackupType
	reason       string
}

// log says what d did, once both its messages are stored.
func (d *dispatch) log(ctx context.Context, logger *slog.Logger) {
	job := d.queued.Msg.(*cofferv1.JobQueued).GetMeta().GetJobId()
	if d.refused != "" {
		logger.WarnContext(ctx, "backup refused", "job_id", job, "instance", d.ref.GetInstance(), "database", d.ref.GetDatabase(), "reason", d.refused)
		return
	}
	logger.InfoContext(ctx, "backup queued", "job_id", job, "instance", d.ref.GetInstance(), "database", d.ref.GetDatabase(),
		"type", d.typ.String(), "reason", d.reason)
}

// backupMessages builds the messages that queue a backup routed to on (or
// refused), carrying ctx's trace context.
func (s *Service) backupMessages(ctx context.Context, on, refused, jobID string, ref *cofferv1.DatabaseRef, typ cofferv1.BackupType, reason string, compression policy.Compression, chain *cofferv1.ScheduleState, chainBreak, vault string) dispatch {
	now := s.cfg.Now()
	detail := reason
	if on != "" && on != ref.GetInstance() {
		detail += " (on replica " + on + ")"
	}
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now),
		Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: ref, BackupType: typ, Detail: detail}
	d := dispatch{queued: bus.Outgoing{Ctx: ctx, Subject: cofferv1.SubjectJobQueued, Msg: q, ID: q.Meta.EventId},
		refused: refused, ref: ref, typ: typ, reason: reason}
	if refused != "" {
		f := &cofferv1.JobFailed{Meta: event.Meta(event.ID("job-failed", jobID), jobID, now),
			Kind: cofferv1.JobKind_JOB_KIND_BACKUP, Database: ref, BackupType: typ, Service: "scheduler", Reason: refused}
		d.then = bus.Outgoing{Ctx: ctx, Subject: cofferv1.SubjectJobFailed, Msg: f, ID: f.Meta.EventId}
		return d
	}
	// compression happens in the vault (per chunk, after deduplication);
	// SQL Server is never asked to compress. The flag is for a streamer
	// that predates vault_compression.
	c := compression.OrDefault()
	w := &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup-work", jobID), jobID, now),
		Database: ref, Type: typ, Reason: reason, Compression: c != policy.Uncompressed,
		VaultCompression: string(c), ChainBreak: chainBreak, Vault: vault}
	if on != ref.GetInstance() {
		w.ReplicaInstance = on
	}
	if chain != nil {
		// what coffer's own chain says the database should show; the
		// streamer takes a full instead when it does not
		w.ExpectedRecoveryFork = chain.GetLastFork()
		switch typ {
		case cofferv1.BackupType_BACKUP_TYPE_LOG:
			w.ExpectedLastLogLsn = chain.GetLastLogLsn()
		case cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
			w.ExpectedDifferentialBaseLsn = chain.GetLastFullCheckpointLsn()
			w.ExpectedDifferentialBaseGuid = chain.GetLastFullBackupSetGuid()
		}
	}
	d.then = bus.Outgoing{Ctx: ctx, Subject: cofferv1.SubjectWorkBackup, Msg: w, ID: w.Meta.EventId}
	return d
}
