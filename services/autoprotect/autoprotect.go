package autoprotect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const (
	// Durable is the consumer of settings, discoveries and configured
	// protections, handled one at a time in stream order.
	Durable = "autoprotect"
	// RetryDurable is the consumer of failed protections, handled several
	// at once since each may wait out a backoff.
	RetryDurable = "autoprotect-retry"
	// RequestedBy marks the protection requests of this service.
	RequestedBy = "autoprotect"
	// service names this service in a JobFailed.
	service = "autoprotect"
)

// Service is the auto-protection service. Build it with New and run it with
// Run.
type Service struct {
	bus       *bus.Bus
	settings  *catalog.Bucket
	inventory *catalog.Bucket
	protected *catalog.Bucket
	cfg       Config
	log       *slog.Logger
	tracer    trace.Tracer
}

// New returns an auto-protection service publishing on b and keeping its
// settings in cat, which must hold the `autoprotect`, `inventory` and
// `protected` buckets (as topology.Setup opens them).
func New(b *bus.Bus, cat *catalog.Catalog, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("autoprotect config: %w", err)
	}
	if b == nil || cat == nil {
		return nil, errors.New("autoprotect: a bus and a catalog are required")
	}
	return &Service{
		bus:       b,
		settings:  cat.Bucket(cofferv1.BucketAutoprotect),
		inventory: cat.Bucket(cofferv1.BucketInventory),
		protected: cat.Bucket(cofferv1.BucketProtected),
		cfg:       cfg,
		log:       cfg.Logger,
		tracer:    cfg.TracerProvider.Tracer("github.com/cofferhq/coffer/services/autoprotect"),
	}, nil
}

// Run consumes the service's events until ctx is done, then stops taking
// new ones and waits (up to Config.DrainTimeout) for the running handlers
// before it returns.
func (s *Service) Run(ctx context.Context) error {
	ordered, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:  cofferv1.StreamEvents,
		Durable: Durable,
		FilterSubjects: []string{
			cofferv1.SubjectAutoprotectRequested,
			cofferv1.SubjectDatabaseDiscovered,
			cofferv1.SubjectProtectionConfigured,
		},
		Backoff:     []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second},
		Concurrency: 1,
	}, s.handle)
	if err != nil {
		return fmt.Errorf("autoprotect: %w", err)
	}
	// A retry waiting out its backoff when Run ends is given back rather
	// than waited for (after a restart it waits only what is left of its
	// interval, counted from the failure). It is given back with a nak
	// delay longer than a pull request lives, so that it goes to the next
	// subscriber instead of bouncing back to this stopping one.
	shutdown := make(chan struct{})
	retry, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream:         cofferv1.StreamEvents,
		Durable:        RetryDurable,
		FilterSubjects: []string{cofferv1.SubjectProtectionFailed},
		Backoff:        []time.Duration{3 * time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second},
		Concurrency:    s.cfg.RetryConcurrency,
	}, func(ctx context.Context, m *bus.Message) error { return s.handleFailed(ctx, m, shutdown) })
	if err != nil {
		ordered.Stop()
		return fmt.Errorf("autoprotect: %w", err)
	}
	<-ctx.Done()
	close(shutdown)

	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, sub := range []*bus.Subscription{ordered, retry} {
		wg.Go(func() { errs[i] = sub.Drain(dctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("autoprotect: %w", err)
	}
	return nil
}

// handle settles one setting, discovery or configured protection.
func (s *Service) handle(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case cofferv1.SubjectAutoprotectRequested:
		var req cofferv1.AutoprotectRequested
		if err := m.Decode(&req); err != nil {
			return err
		}
		return s.set(ctx, req.GetSetting())
	case cofferv1.SubjectDatabaseDiscovered:
		var ev cofferv1.DatabaseDiscovered
		if err := m.Decode(&ev); err != nil {
			return err
		}
		return s.discovered(ctx, &ev)
	case cofferv1.SubjectProtectionConfigured:
		var ev cofferv1.ProtectionConfigured
		if err := m.Decode(&ev); err != nil {
			return err
		}
		if ev.GetItem().GetRequestedBy() == RequestedBy {
			s.log.InfoContext(ctx, "database protected automatically",
				slog.String(telemetry.InstanceKey, ev.GetItem().GetDatabase().GetInstance()),
				slog.String(telemetry.DatabaseKey, ev.GetItem().GetDatabase().GetDatabase()),
				slog.String("policy", ev.GetItem().GetPolicy()), slog.Int("attempt", int(ev.GetAttempt())))
		}
		return nil
	default:
		return bus.Permanent(fmt.Errorf("unexpected subject %s", m.Subject))
	}
}

// set stores an instance's setting and, when it is on, protects what the
// instance already holds.
func (s *Service) set(ctx context.Context, st *cofferv1.AutoprotectSetting) error {
	instance := st.GetInstance()
	if instance == "" {
		return bus.Permanent(errors.New("auto-protection setting without an instance"))
	}
	if _, err := s.settings.Put(ctx, catalog.Key(instance), st); err != nil {
		return fmt.Errorf("store auto-protection of %s: %w", instance, err)
	}
	s.log.InfoContext(ctx, "auto-protection set", slog.String(telemetry.InstanceKey, instance),
		slog.Bool("enabled", st.GetEnabled()), slog.String("policy", st.GetPolicy()))
	if !st.GetEnabled() {
		return nil
	}
	var dbs []*cofferv1.DatabaseInfo
	err := s.inventory.List(ctx, catalog.Key(instance), func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(_ string, m proto.Message) error {
			dbs = append(dbs, m.(*cofferv1.DatabaseInfo))
			return nil
		})
	if err != nil {
		return fmt.Errorf("read inventory of %s: %w", instance, err)
	}
	for _, d := range dbs {
		if err := s.protect(ctx, st, d); err != nil {
			return err
		}
	}
	return nil
}

// discovered protects a new database when its instance is autoprotected.
func (s *Service) discovered(ctx context.Context, ev *cofferv1.DatabaseDiscovered) error {
	st, err := s.setting(ctx, ev.GetInstance())
	if err != nil || !st.GetEnabled() {
		return err
	}
	return s.protect(ctx, st, ev.GetDatabase())
}

// setting reads an instance's setting; an instance never set is off.
func (s *Service) setting(ctx context.Context, instance string) (*cofferv1.AutoprotectSetting, error) {
	var st cofferv1.AutoprotectSetting
	_, err := s.settings.Get(ctx, catalog.Key(instance), &st)
	if errors.Is(err, catalog.ErrNotFound) {
		return &cofferv1.AutoprotectSetting{Instance: instance}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read auto-protection of %s: %w", instance, err)
	}
	return &st, nil
}

// protect asks, once, for protection of an eligible database that is not
// protected yet.
func (s *Service) protect(ctx context.Context, st *cofferv1.AutoprotectSetting, d *cofferv1.DatabaseInfo) error {
	instance, name := st.GetInstance(), d.GetName()
	log := s.log.With(slog.String(telemetry.InstanceKey, instance), slog.String(telemetry.DatabaseKey, name))
	if why := ineligible(d); why != "" {
		log.DebugContext(ctx, "database not protected automatically", slog.String("why", why))
		return nil
	}
	done, err := s.isProtected(ctx, instance, name)
	if err != nil || done {
		return err
	}
	id := event.ID("protection.requested", instance, name,
		d.GetCreateDate().AsTime().UTC().Format(time.RFC3339Nano), strconv.Itoa(int(d.GetDatabaseId())), "1")
	req := &cofferv1.ProtectionRequested{
		Meta:        event.Meta(id, "", s.cfg.Now()),
		Database:    &cofferv1.DatabaseRef{Instance: instance, Database: name},
		Policy:      st.GetPolicy(),
		RequestedBy: RequestedBy,
		Attempt:     1,
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectProtectionRequested, req, id); err != nil {
		return fmt.Errorf("request protection of %s/%s: %w", instance, name, err)
	}
	log.InfoContext(ctx, "protection requested", slog.String("policy", st.GetPolicy()), slog.Int("attempt", 1))
	return nil
}

// systemDatabases are never protected automatically (tempdb never backed
// up at all). Their ids are fixed too, which covers a spelling in another
// case under a case-insensitive collation.
var systemDatabases = map[string]bool{"master": true, "tempdb": true, "model": true, "msdb": true}

// ineligible says why a database is not protected automatically, or ""
// when it is.
func ineligible(d *cofferv1.DatabaseInfo) string {
	switch {
	case d.GetSnapshot():
		return "a database snapshot cannot be backed up"
	case systemDatabases[d.GetName()] || (d.GetDatabaseId() >= 1 && d.GetDatabaseId() <= 4):
		return "system databases are protected explicitly"
	case event.IsScratch(d.GetName()):
		return "a test restore's scratch database lives only while the test runs"
	}
	return ""
}

// isProtected reports whether the scheduler protects the database. A
// record left by a stopped or failed protection does not count.
func (s *Service) isProtected(ctx context.Context, instance, name string) (bool, error) {
	var it cofferv1.ProtectedItem
	_, err := s.protected.Get(ctx, catalog.Key(instance, name), &it)
	if errors.Is(err, catalog.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read protection of %s/%s: %w", instance, name, err)
	}
	switch it.GetState() {
	case cofferv1.ProtectionState_PROTECTION_STATE_UNPROTECTED, cofferv1.ProtectionState_PROTECTION_STATE_FAILED:
		return false, nil
	}
	return true, nil
}

// handleFailed retries a failed protection of this service's after its
// backoff, or reports it once the attempts are spent.
func (s *Service) handleFailed(ctx context.Context, m *bus.Message, shutdown <-chan struct{}) error {
	var ev cofferv1.ProtectionFailed
	if err := m.Decode(&ev); err != nil {
		return err
	}
	if ev.GetRequestedBy() != RequestedBy {
		return nil // a person's request: the person sees its failure
	}
	instance, name := ev.GetDatabase().GetInstance(), ev.GetDatabase().GetDatabase()
	if instance == "" || name == "" {
		return bus.Permanent(errors.New("protection failure without a database"))
	}
	log := s.log.With(slog.String(telemetry.InstanceKey, instance), slog.String(telemetry.DatabaseKey, name))
	attempt := max(int(ev.GetAttempt()), 1)
	failedID := ev.GetMeta().GetEventId()
	if failedID == "" {
		failedID = m.ID()
	}
	failedAt := s.cfg.Now()
	if ev.GetMeta().GetTime() != nil {
		failedAt = ev.GetMeta().GetTime().AsTime()
	}

	if attempt >= s.cfg.Attempts {
		return s.giveUp(ctx, log, &ev, attempt, failedID, failedAt)
	}

	wait := s.interval(attempt)
	log.InfoContext(ctx, "protection failed; retrying", slog.Int("attempt", attempt),
		slog.String("reason", ev.GetReason()), slog.Duration("backoff", wait))
	wctx, span := s.tracer.Start(ctx, "autoprotect backoff", trace.WithAttributes(
		attribute.String(telemetry.InstanceKey, instance), attribute.String(telemetry.DatabaseKey, name),
		attribute.Int("coffer.attempt", attempt), attribute.Int64("coffer.backoff_ms", wait.Milliseconds())))
	err := s.sleepUntil(wctx, failedAt.Add(wait), wait, shutdown)
	span.End()
	if err != nil {
		return err
	}

	st, err := s.setting(ctx, instance)
	if err != nil {
		return err
	}
	if !st.GetEnabled() {
		log.InfoContext(ctx, "auto-protection turned off; not retrying", slog.Int("attempt", attempt))
		return nil
	}
	done, err := s.isProtected(ctx, instance, name)
	if err != nil {
		return err
	}
	if done {
		log.InfoContext(ctx, "database protected meanwhile; not retrying", slog.Int("attempt", attempt))
		return nil
	}
	policy := st.GetPolicy()
	if policy == "" {
		policy = ev.GetPolicy()
	}
	next := attempt + 1
	id := event.ID("protection.requested", instance, name, "retry", failedID, strconv.Itoa(next))
	req := &cofferv1.ProtectionRequested{
		Meta:        event.Meta(id, ev.GetMeta().GetJobId(), s.cfg.Now()),
		Database:    &cofferv1.DatabaseRef{Instance: instance, Database: name},
		Policy:      policy,
		RequestedBy: RequestedBy,
		Attempt:     int32(next),
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectProtectionRequested, req, id); err != nil {
		return fmt.Errorf("request protection of %s/%s again: %w", instance, name, err)
	}
	log.InfoContext(ctx, "protection requested", slog.String("policy", policy), slog.Int("attempt", next))
	return nil
}

// giveUp reports a protection whose every attempt failed, as a failed
// protect job a person sees.
func (s *Service) giveUp(ctx context.Context, log *slog.Logger, ev *cofferv1.ProtectionFailed, attempt int, failedID string, failedAt time.Time) error {
	ref := ev.GetDatabase()
	jobID := event.DerivedJobID(failedAt, service, ref.GetInstance(), ref.GetDatabase(), failedID)
	id := event.ID("job.failed", jobID)
	reason := fmt.Sprintf("auto-protection of %s on %s failed after %d attempts: %s",
		quoteName(ref.GetDatabase()), ref.GetInstance(), attempt, ev.GetReason())
	f := &cofferv1.JobFailed{
		Meta:     event.Meta(id, jobID, s.cfg.Now()),
		Kind:     cofferv1.JobKind_JOB_KIND_PROTECT,
		Database: &cofferv1.DatabaseRef{Instance: ref.GetInstance(), Database: ref.GetDatabase()},
		Reason:   reason,
		Service:  service,
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectJobFailed, f, id); err != nil {
		return fmt.Errorf("report failed protection of %s/%s: %w", ref.GetInstance(), ref.GetDatabase(), err)
	}
	log.WarnContext(ctx, "auto-protection failed; giving up", slog.String(telemetry.JobIDKey, jobID),
		slog.Int("attempts", attempt), slog.String("reason", ev.GetReason()))
	return nil
}

// interval is the wait after the n-th failed attempt: the n-th interval of
// the exponential backoff.
func (s *Service) interval(n int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.cfg.InitialInterval),
		backoff.WithMultiplier(s.cfg.Multiplier),
		backoff.WithRandomizationFactor(s.cfg.RandomizationFactor),
		backoff.WithMaxInterval(s.cfg.MaxInterval),
		backoff.WithMaxElapsedTime(0),
	)
	var d time.Duration
	for range n {
		d = b.NextBackOff()
	}
	return d
}

// errShutdown gives a waiting retry back to the bus when Run ends.
var errShutdown = errors.New("shutting down: retry given back")

// sleepUntil waits until the clock reads t, at most limit (so that a clock
// skewed against the failure's publisher cannot stretch the wait), or until
// ctx ends or shutdown is closed. A redelivered failure whose backoff has
// passed does not wait.
func (s *Service) sleepUntil(ctx context.Context, t time.Time, limit time.Duration, shutdown <-chan struct{}) error {
	d := min(t.Sub(s.cfg.Now()), limit)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-shutdown:
		return errShutdown
	case <-ctx.Done():
		return fmt.Errorf("waiting to retry: %w", ctx.Err())
	}
}

// quoteName writes a database name as T-SQL quotes an identifier, which is
// how a DBA reads it unambiguously (spaces at either end, ']' and all).
func quoteName(name string) string {
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
}
