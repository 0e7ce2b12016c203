package streamer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Name is the service's name: the durable consumer its workers share and
// the service named in the JobFailed events it publishes.
const Name = "backup-streamer"

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) of
// a streamer process that runs workers jobs at once, which the
// standalone binary sets unless GOMEMLIMIT does. A job's live memory is
// mostly byte buffers (the parts SQL Server sends a URL, the vault's
// chunks and packs, a restore's cache), which the garbage collector
// scans for nothing: collecting more often near the limit costs little,
// where by default the heap would grow to twice what is live.
func MemoryLimit(workers int) int64 {
	if workers <= 0 {
		workers = defaultWorkers
	}
	return 96<<20 + int64(workers)*64<<20
}

// durable is the work queue's consumer, shared by every streamer worker.
const durable = "streamer"

const tracerName = "github.com/cofferhq/coffer/services/backup-streamer"

// Service is the backup-streamer. Create it with New and run it with Run.
type Service struct {
	bus       *bus.Bus
	vault     *vault.Vault
	vaults    *daemon.Vaults // vault as the default, and the named ones
	instances *catalog.Bucket
	rps       *catalog.Bucket
	jobs      *catalog.Bucket
	sealer    *secret.Sealer
	cfg       Config
	log       *slog.Logger
	tracer    trace.Tracer

	mu      sync.Mutex
	clients map[string]*instanceClient

	url *urlEndpoint // nil without URL mode
}

// instanceClient is the connection pool to one instance, and the sealed
// connection string it was opened from, so a re-registered instance gets
// a new one.
type instanceClient struct {
	sealed []byte
	c      *mssql.Client
}

// New returns a streamer that reads instances and recovery points from cat
// (as topology.Setup leaves it) and moves backups in and out of v.
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
		return nil, fmt.Errorf("backup-streamer: %w", err)
	}
	sealer, err := secret.New(cfg.MasterKey, "instance-credentials")
	if err != nil {
		return nil, fmt.Errorf("backup-streamer: %w", err)
	}
	vaults, err := daemon.NewVaults(v, cat, cfg.MasterKey, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("backup-streamer: %w", err)
	}
	svc := &Service{
		bus:       b,
		vault:     v,
		vaults:    vaults,
		instances: cat.Bucket(cofferv1.BucketInstances),
		rps:       cat.Bucket(cofferv1.BucketRecoveryPoints),
		jobs:      cat.Bucket(cofferv1.BucketJobs),
		sealer:    sealer,
		cfg:       cfg,
		log:       cfg.Logger,
		tracer:    cfg.TracerProvider.Tracer(tracerName),
		clients:   make(map[string]*instanceClient),
	}
	if cfg.Endpoint.enabled() {
		if svc.url, err = newURLEndpoint(cfg.Endpoint, v, cfg.Logger, cfg.Now); err != nil {
			return nil, fmt.Errorf("backup-streamer: %w", err)
		}
	}
	return svc, nil
}

// Run takes work from the queue with Config.Workers jobs at once, and
// answers URL checks (SubjectURLCheck), until ctx is done. Then it stops
// taking work, stops the checks still running, and waits up to
// Config.DrainTimeout for the running jobs; those still running are
// cancelled (their statements with them) and handed back to the queue.
// It closes its connections to the instances before it returns, nil
// after a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeClients()
	if err := os.MkdirAll(s.cfg.StagingDir, 0o750); err != nil {
		return fmt.Errorf("backup-streamer: staging directory: %w", err)
	}
	s.sweepStaging(ctx)
	if s.url != nil {
		if err := s.url.listen(); err != nil {
			return fmt.Errorf("backup-streamer: %w", err)
		}
		// the endpoint outlives the jobs: it stops once they are drained
		ectx, stopEndpoint := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan error, 1)
		go func() { served <- s.url.serve(ectx) }()
		defer func() {
			stopEndpoint()
			if err := <-served; err != nil {
				s.log.ErrorContext(ctx, "S3 endpoint stopped", slog.Any("error", err))
			}
		}()
	}
	// URL checks use the endpoint: they stop before it does
	stopChecks, err := s.serveURLChecks(ctx)
	if err != nil {
		return fmt.Errorf("backup-streamer: answer URL checks: %w", err)
	}
	defer stopChecks()
	sub, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:      cofferv1.StreamWork,
		Durable:     durable,
		AckWait:     s.cfg.AckWait,
		MaxDeliver:  s.cfg.MaxDeliver,
		Backoff:     s.cfg.Backoff,
		Concurrency: s.cfg.Workers,
	}, s.handle)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean shutdown
		}
		return fmt.Errorf("backup-streamer: consume: %w", err)
	}
	s.log.InfoContext(ctx, "backup-streamer running", slog.Int("workers", s.cfg.Workers), slog.String("staging_dir", s.cfg.StagingDir))
	select {
	case <-ctx.Done():
	case <-sub.Done():
		return errors.New("backup-streamer: subscription ended")
	}
	stopChecks()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	if err := sub.Drain(dctx); err != nil {
		<-sub.Done()
		return fmt.Errorf("backup-streamer: drain: %w", err)
	}
	return nil
}

// sweepStaging deletes the backup files a crashed job left in the staging
// directory: files of the streamer's naming (a job id, then .bak) older
// than Config.StagingMaxAge. Younger ones may belong to another streamer
// sharing the directory, whose jobs are still running.
func (s *Service) sweepStaging(ctx context.Context) {
	ents, err := os.ReadDir(s.cfg.StagingDir)
	if err != nil {
		s.log.WarnContext(ctx, "staging directory not swept", slog.Any("error", err))
		return
	}
	cutoff := s.cfg.Now().Add(-s.cfg.StagingMaxAge)
	for _, d := range ents {
		name := d.Name()
		if !d.Type().IsRegular() || !strings.HasPrefix(name, "j") || !strings.HasSuffix(name, ".bak") {
			continue
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		path := filepath.Join(s.cfg.StagingDir, name)
		if err := removeFile(path); err != nil {
			s.log.WarnContext(ctx, "leftover staging file not removed", slog.String("path", path), slog.Any("error", err))
			continue
		}
		s.log.InfoContext(ctx, "leftover staging file of a crashed job removed", slog.String("path", path), slog.Time("modified", info.ModTime()))
	}
}

func (s *Service) handle(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case cofferv1.SubjectWorkBackup:
		return runWork(s, ctx, m, &cofferv1.BackupRequested{}, s.backup)
	case cofferv1.SubjectWorkRestore:
		return runWork(s, ctx, m, &cofferv1.RestoreRequested{}, s.restore)
	case cofferv1.SubjectWorkVerify:
		return runWork(s, ctx, m, &cofferv1.VerifyRequested{}, s.verify)
	case cofferv1.SubjectWorkCopy:
		return runWork(s, ctx, m, &cofferv1.CopyRequested{}, s.copyPoint)
	}
	return bus.Permanent(fmt.Errorf("unexpected work subject %s", m.Subject))
}

// failure is a job that can never succeed: SQL Server refused it, the
// connection dropped, the vault failed, the request makes no sense. The
// job fails with reason and its work is acknowledged.
type failure struct{ reason string }

func (f *failure) Error() string { return f.reason }

// vaultOf returns the vault called name ("": the default), opened on
// first use and kept. A name no vault has fails the job.
func (s *Service) vaultOf(ctx context.Context, name string) (*vault.Vault, error) {
	v, err := s.vaults.Get(ctx, name)
	if errors.Is(err, daemon.ErrUnknownVault) {
		return nil, fail("%v", err)
	}
	return v, err
}

func fail(format string, args ...any) error {
	return &failure{reason: fmt.Sprintf(format, args...)}
}

// settle turns a job's result into the work message's settlement. A
// failure is published as JobFailed (made by failed) and acknowledged; a
// transient error is returned for redelivery, unless this was the last
// delivery, when it is a failure too; shutdown hands the work back.
func (s *Service) settle(ctx context.Context, m *bus.Message, log *slog.Logger, err error, failed func(reason string) *cofferv1.JobFailed) error {
	if err == nil {
		return nil
	}
	if by := cancelledBy(ctx); by != "" {
		reason := context.Cause(ctx).Error()
		if f := (*failure)(nil); errors.As(err, &f) && strings.HasPrefix(f.reason, reason) {
			reason = f.reason // what the cancel left, said by the job
		}
		log.InfoContext(ctx, "job cancelled", slog.String("by", by))
		jf := failed(reason)
		jf.CancelledBy = by
		if err := s.bus.Publish(context.WithoutCancel(ctx), cofferv1.SubjectJobFailed, jf, jf.Meta.EventId); err != nil {
			return fmt.Errorf("publish job cancel: %w", err)
		}
		return nil
	}
	if ctx.Err() != nil {
		log.InfoContext(ctx, "job interrupted; handing it back", slog.Any("error", err))
		return err
	}
	reason := ""
	var f *failure
	switch {
	case errors.As(err, &f):
		reason = f.reason
	case s.cfg.MaxDeliver > 0 && m.Delivered() >= uint64(s.cfg.MaxDeliver):
		reason = fmt.Sprintf("gave up after %d tries: %v", m.Delivered(), err)
	default:
		log.WarnContext(ctx, "job failed; will retry", slog.Any("error", err), slog.Uint64("delivered", m.Delivered()))
		return err
	}
	log.WarnContext(ctx, "job failed", slog.String("reason", reason))
	jf := failed(reason)
	if err := s.bus.Publish(ctx, cofferv1.SubjectJobFailed, jf, jf.Meta.EventId); err != nil {
		return fmt.Errorf("publish job failure: %w", err)
	}
	return nil
}

// jobDone reports whether job id already has its outcome, so that a
// redelivered work message is not run again.
func (s *Service) jobDone(ctx context.Context, id string) (bool, error) {
	var j cofferv1.Job
	// also for a job cancelled before it started here, which then fails
	// at once as cancelled
	_, err := s.jobs.Get(context.WithoutCancel(ctx), catalog.Key(id), &j)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read job %s: %w", id, err)
	}
	switch j.State {
	case cofferv1.JobState_JOB_STATE_SUCCEEDED, cofferv1.JobState_JOB_STATE_FAILED, cofferv1.JobState_JOB_STATE_CANCELLED:
		return true, nil
	}
	return false, nil
}

// client returns the connection pool to instance, opening the instance's
// sealed connection string the first time (and whenever it changes), and
// checks that the instance answers. An instance that does not answer is a
// transient error; one that refuses the login, a failure.
func (s *Service) client(ctx context.Context, instance string) (*mssql.Client, error) {
	var rec cofferv1.Instance
	_, err := s.instances.Get(ctx, catalog.Key(instance), &rec)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return nil, fail("instance %q is not registered", instance)
	case err != nil:
		return nil, fmt.Errorf("read instance %q: %w", instance, err)
	case len(rec.GetSealedDsn()) == 0:
		return nil, fail("instance %q has no connection string", instance)
	}
	c, fresh, err := s.cachedClient(instance, rec.GetSealedDsn())
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		if mssql.Number(err) != 0 {
			return nil, fail("instance %q refused the connection: %v", instance, err)
		}
		return nil, fmt.Errorf("connect to instance %q: %w", instance, err)
	}
	if fresh && s.url != nil {
		s.sweepCredentials(ctx, instance, c)
	}
	return c, nil
}

// sweepCredentials drops the credentials a job of this streamer left on
// an instance when the process died before the job could drop them: each
// names a job's URL prefix at this endpoint, and no job of this process
// runs yet that uses it.
func (s *Service) sweepCredentials(ctx context.Context, instance string, c *mssql.Client) {
	names, err := c.Credentials(ctx, s.url.credentialPrefix())
	if err != nil {
		s.log.WarnContext(ctx, "credentials of ended jobs not listed", slog.String("instance", instance), slog.Any("error", err))
		return
	}
	for _, n := range names {
		jid := strings.TrimPrefix(n, s.url.credentialPrefix())
		if s.url.job(jid) != nil {
			continue
		}
		if err := c.DropCredential(ctx, n); err != nil {
			s.log.WarnContext(ctx, "credential of an ended job not dropped", slog.String("instance", instance), slog.String("credential", n), slog.Any("error", err))
			continue
		}
		s.log.InfoContext(ctx, "credential of an ended job dropped", slog.String("instance", instance), slog.String("credential", n))
	}
}

// cachedClient returns the pool of an instance, and whether it is new.
func (s *Service) cachedClient(instance string, sealed []byte) (*mssql.Client, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ic, ok := s.clients[instance]; ok {
		if bytes.Equal(ic.sealed, sealed) {
			return ic.c, false, nil
		}
		ic.c.Close()
		delete(s.clients, instance)
	}
	dsn, err := s.sealer.Open(sealed, instance)
	if err != nil {
		return nil, false, fail("the connection string of instance %q does not open: %v", instance, err)
	}
	c, err := mssql.Open(string(dsn))
	if err != nil {
		return nil, false, fail("instance %q: %v", instance, err)
	}
	s.clients[instance] = &instanceClient{sealed: bytes.Clone(sealed), c: c}
	return c, true, nil
}

func (s *Service) closeClients() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ic := range s.clients {
		ic.c.Close()
		delete(s.clients, name)
	}
}

// publish stores an event of job jobID under its idempotency key.
func (s *Service) publish(ctx context.Context, subject string, msg proto.Message, id string) error {
	if err := s.bus.Publish(ctx, subject, msg, id); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

func dbAttrs(jobID string, db *cofferv1.DatabaseRef) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String(telemetry.JobIDKey, jobID),
		attribute.String(telemetry.InstanceKey, db.GetInstance()),
		attribute.String(telemetry.DatabaseKey, db.GetDatabase()),
	}
}

func (s *Service) jobLogger(jobID string, db *cofferv1.DatabaseRef) *slog.Logger {
	return s.log.With(slog.String(telemetry.JobIDKey, jobID), slog.String(telemetry.InstanceKey, db.GetInstance()),
		slog.String(telemetry.DatabaseKey, db.GetDatabase()))
}

// checkJobID refuses a job id that cannot name a staging file.
func checkJobID(id string) error {
	if id == "" {
		return bus.Permanent(errors.New("work has no job id"))
	}
	if err := vault.ValidateManifestID(id); err != nil {
		return bus.Permanent(fmt.Errorf("job id: %w", err))
	}
	return nil
}
