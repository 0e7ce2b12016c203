package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Name is the service's name: its durable consumer and the service it
// reports in JobFailed.
const Name = "committer"

const tracerName = "github.com/cofferhq/coffer/services/committer"

// subjects are the events the committer consumes.
var subjects = []string{
	cofferv1.SubjectJobQueued,
	cofferv1.SubjectJobProgress,
	cofferv1.SubjectJobFailed,
	cofferv1.SubjectRestoreCompleted,
	cofferv1.SubjectBackupStreamed,
	cofferv1.SubjectRecoveryPointsExpired,
	cofferv1.SubjectVerifyCompleted,
	cofferv1.SubjectRecoveryPointsDelete,
	cofferv1.SubjectRecoveryPointsUndelete,
	cofferv1.SubjectCatalogRebuild,
	cofferv1.SubjectVaultCreate,
	cofferv1.SubjectCopyStreamed,
	cofferv1.SubjectJobCancel,
	cofferv1.SubjectJobLogged,
}

// Service is the committer. Create it with New and run it with Run.
type Service struct {
	bus   *bus.Bus
	vault *vault.Vault
	// vaults opens the named vaults, vault among them as the default
	vaults       *daemon.Vaults
	vaultRecords *catalog.Bucket
	rps          *catalog.Bucket
	jobs         *catalog.Bucket
	cfg          Config
	log          *slog.Logger
	tracer       trace.Tracer
	gc           collector
	// read only: the scheduler owns them
	protected *catalog.Bucket
	policies  *catalog.Bucket
}

// New returns a committer that records recovery points and jobs in cat
// (which must have the recovery_points and jobs buckets open, as
// topology.Setup leaves it) and commits manifests to v.
func New(b *bus.Bus, cat *catalog.Catalog, v *vault.Vault, cfg Config) (*Service, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if b == nil {
		errs = append(errs, errors.New("no bus"))
	}
	if cat == nil {
		errs = append(errs, errors.New("no catalog"))
	}
	if v == nil {
		errs = append(errs, errors.New("no vault"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("committer: %w", err)
	}
	vaults, err := daemon.NewVaults(v, cat, cfg.MasterKey, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("committer: %w", err)
	}
	return &Service{
		bus:          b,
		vault:        v,
		vaults:       vaults,
		vaultRecords: cat.Bucket(cofferv1.BucketVaults),
		rps:          cat.Bucket(cofferv1.BucketRecoveryPoints),
		jobs:         cat.Bucket(cofferv1.BucketJobs),
		protected:    cat.Bucket(cofferv1.BucketProtected),
		policies:     cat.Bucket(cofferv1.BucketPolicies),
		cfg:          cfg,
		log:          cfg.Logger,
		tracer:       cfg.TracerProvider.Tracer(tracerName),
	}, nil
}

// Run consumes the committer's events until ctx is done, then stops
// taking new ones and waits up to Config.DrainTimeout for those being
// handled. It returns nil after a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:         cofferv1.StreamJobs,
		Durable:        Name,
		FilterSubjects: subjects,
		AckWait:        s.cfg.AckWait,
		MaxDeliver:     s.cfg.MaxDeliver,
		Backoff:        s.cfg.Backoff,
		Concurrency:    s.cfg.Workers,
	}, s.handle)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean shutdown
		}
		return fmt.Errorf("committer: consume: %w", err)
	}
	s.log.InfoContext(ctx, "committer running", slog.Int("workers", s.cfg.Workers))
	copyCtx, stopCopy := context.WithCancel(ctx)
	var copying sync.WaitGroup
	copying.Go(func() { s.keepPolicyCopy(copyCtx) })
	defer copying.Wait()
	defer stopCopy()
	gcTicks := s.cfg.GCTicks
	if gcTicks == nil {
		t := time.NewTicker(s.cfg.GCInterval)
		defer t.Stop()
		gcTicks = t.C
	}
	copyTicks := s.cfg.CopyTicks
	if copyTicks == nil {
		t := time.NewTicker(s.cfg.CopyInterval)
		defer t.Stop()
		copyTicks = t.C
	}
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-copyTicks:
			// by the service's clock, as the copies' due times are
			if err := s.sweepCopies(ctx, s.cfg.Now()); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "copy sweep failed; it runs again at the next interval", slog.Any("error", err))
			}
		case <-sub.Done():
			return errors.New("committer: subscription ended")
		case now := <-gcTicks:
			if _, _, err := s.CollectGarbage(ctx, now); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "garbage collection failed; it runs again at the next interval", slog.Any("error", err))
			}
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	if err := sub.Drain(dctx); err != nil {
		return fmt.Errorf("committer: drain: %w", err)
	}
	return nil
}

// handle dispatches one event by subject.
func (s *Service) handle(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case cofferv1.SubjectJobQueued:
		var e cofferv1.JobQueued
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.jobQueued(ctx, &e)
	case cofferv1.SubjectJobProgress:
		var e cofferv1.JobProgress
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.jobProgress(ctx, &e)
	case cofferv1.SubjectJobFailed:
		var e cofferv1.JobFailed
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.jobFailed(ctx, &e)
	case cofferv1.SubjectRestoreCompleted:
		var e cofferv1.RestoreCompleted
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.restoreCompleted(ctx, &e)
	case cofferv1.SubjectBackupStreamed:
		var e cofferv1.BackupStreamed
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.backupStreamed(ctx, &e)
	case cofferv1.SubjectVerifyCompleted:
		var e cofferv1.VerifyCompleted
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.verifyCompleted(ctx, &e)
	case cofferv1.SubjectRecoveryPointsExpired:
		var e cofferv1.RecoveryPointsExpired
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.expire(ctx, &e)
	case cofferv1.SubjectRecoveryPointsDelete:
		var e cofferv1.RecoveryPointsDeleteRequested
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.softDelete(ctx, &e)
	case cofferv1.SubjectRecoveryPointsUndelete:
		var e cofferv1.RecoveryPointsUndeleteRequested
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.undelete(ctx, &e)
	case cofferv1.SubjectCatalogRebuild:
		var e cofferv1.CatalogRebuildRequested
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.rebuildRequested(ctx, &e)
	case cofferv1.SubjectVaultCreate:
		var e cofferv1.VaultCreateRequested
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.vaultCreate(ctx, &e)
	case cofferv1.SubjectJobCancel:
		var e cofferv1.JobCancelRequested
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.jobCancel(ctx, &e)
	case cofferv1.SubjectJobLogged:
		var e cofferv1.JobLogged
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.jobLogged(ctx, &e)
	case cofferv1.SubjectCopyStreamed:
		var e cofferv1.CopyStreamed
		if err := m.Decode(&e); err != nil {
			return err
		}
		return s.copyStreamed(ctx, &e)
	}
	return bus.Permanent(fmt.Errorf("committer: unexpected subject %s", m.Subject))
}
