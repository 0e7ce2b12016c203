package alerter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const (
	// Durable is the consumer of COFFER_EVENTS: instance health,
	// configured protections and vault checks.
	Durable = "alerter"
	// JobsDurable is the consumer of COFFER_JOBS: failures, chain breaks
	// and the successes that resolve them.
	JobsDurable = "alerter-jobs"
)

// Service is the alerter. Build it with New and run it with Run.
type Service struct {
	bus       *bus.Bus
	alerts    *alert.Alerter
	protected *catalog.Bucket
	schedule  *catalog.Bucket
	policies  *catalog.Bucket
	cfg       Config
	log       *slog.Logger
}

// New returns an alerter consuming b and keeping its alerts in cat,
// which must hold the `alerts`, `alert_settings`, `protected`,
// `schedule` and `policies` buckets (as topology.Setup opens them).
func New(b *bus.Bus, cat *catalog.Catalog, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alerter config: %w", err)
	}
	if b == nil || cat == nil {
		return nil, errors.New("alerter: a bus and a catalog are required")
	}
	a, err := alert.New(cat, cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("alerter: %w", err)
	}
	return &Service{bus: b, alerts: a, protected: cat.Bucket(cofferv1.BucketProtected),
		schedule: cat.Bucket(cofferv1.BucketSchedule), policies: cat.Bucket(cofferv1.BucketPolicies),
		cfg: cfg, log: cfg.Logger}, nil
}

// Alerts is the service's alerter (tests wait on its sending).
func (s *Service) Alerts() *alert.Alerter { return s.alerts }

// Run consumes the events and evaluates the RPO rule every
// Config.Interval until ctx is done, then stops taking events and waits
// (up to Config.DrainTimeout) for the running handlers and the sending
// already started.
func (s *Service) Run(ctx context.Context) error {
	events, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream: cofferv1.StreamEvents, Durable: Durable, FilterSubjects: slices.Sorted(maps.Keys(eventRules)),
	}, s.handler(eventRules))
	if err != nil {
		return fmt.Errorf("alerter: %w", err)
	}
	jobs, err := s.bus.Consume(ctx, bus.ConsumerSpec{
		Stream: cofferv1.StreamJobs, Durable: JobsDurable, FilterSubjects: slices.Sorted(maps.Keys(jobRules)),
	}, s.handler(jobRules))
	if err != nil {
		events.Stop()
		return fmt.Errorf("alerter: %w", err)
	}
	// the dashboard shows the rules from the start, not after an interval
	if err := s.alerts.PublishRules(ctx); err != nil && ctx.Err() == nil {
		s.log.ErrorContext(ctx, "alert rules not published", slog.Any("error", err))
	}
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-ticker.C:
			if err := s.Evaluate(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "alerts not evaluated", slog.Any("error", err))
			}
		}
	}

	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, sub := range []*bus.Subscription{events, jobs} {
		wg.Go(func() { errs[i] = sub.Drain(dctx) })
	}
	wg.Wait()
	errs[2] = s.alerts.Close(dctx)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("alerter: %w", err)
	}
	return nil
}

// rule turns one decoded event into alert changes.
type rule func(*bus.Message) ([]alert.Change, error)

// on decodes a message into a T for fn.
func on[T any, PT interface {
	*T
	proto.Message
}](fn func(PT) []alert.Change) rule {
	return func(m *bus.Message) ([]alert.Change, error) {
		ev := PT(new(T))
		if err := m.Decode(ev); err != nil {
			return nil, err
		}
		return fn(ev), nil
	}
}

// eventRules and jobRules are the rules of each subject the two
// consumers read; their keys are the consumers' filters.
var (
	eventRules = map[string]rule{
		cofferv1.SubjectInstanceHealthChanged: on(alert.OnHealth),
		cofferv1.SubjectProtectionConfigured:  on(alert.OnProtected),
		cofferv1.SubjectVaultChecked:          on(alert.OnVaultChecked),
	}
	jobRules = map[string]rule{
		cofferv1.SubjectJobFailed:              on(alert.OnJobFailed),
		cofferv1.SubjectChainBroken:            on(alert.OnChainBroken),
		cofferv1.SubjectRecoveryPointCommitted: on(alert.OnCommitted),
		cofferv1.SubjectRestoreCompleted:       on(alert.OnRestored),
		cofferv1.SubjectVerifyCompleted:        on(alert.OnVerified),
	}
)

// handler records the changes of each message rules read.
func (s *Service) handler(rules map[string]rule) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		r, ok := rules[m.Subject]
		if !ok {
			return bus.Permanent(fmt.Errorf("unexpected subject %s", m.Subject))
		}
		changes, err := r(m)
		if err != nil {
			return err
		}
		return s.alerts.Apply(ctx, changes)
	}
}

// Evaluate evaluates the RPO rule over every protected database, sweeps
// what was left unsent, publishes the rules and channels (the settings
// may have changed) and deletes the alerts resolved more than
// alert.ResolvedRetention ago. Run calls it every Config.Interval.
func (s *Service) Evaluate(ctx context.Context) error {
	return errors.Join(s.evaluateRPO(ctx), s.alerts.Sweep(ctx), s.alerts.PublishRules(ctx), s.prune(ctx))
}

// prune deletes the alerts resolved more than alert.ResolvedRetention
// ago.
func (s *Service) prune(ctx context.Context) error {
	n, err := s.alerts.Store().Prune(ctx, s.cfg.Now().Add(-alert.ResolvedRetention))
	if n > 0 {
		s.log.InfoContext(ctx, "old resolved alerts deleted", slog.Int("alerts", n))
	}
	return err
}

// evaluateRPO opens the rpo alert of each protected database out of its
// RPO and resolves those back within it, or no longer protected.
func (s *Service) evaluateRPO(ctx context.Context) error {
	now := s.cfg.Now()
	open, err := s.alerts.Store().OpenKeys(ctx, alert.RPO)
	if err != nil {
		return err
	}
	dbs, err := s.protections(ctx)
	if err != nil {
		return err
	}
	by := "rpo@" + now.UTC().Format(time.RFC3339Nano)
	var changes []alert.Change
	for _, c := range alert.EvaluateRPO(now, dbs, by) {
		key := c.Key()
		if _, isOpen := open[key]; c.Open != isOpen { // only what changes: a get per database would cost a fleet
			changes = append(changes, c)
		}
		delete(open, key)
	}
	for _, st := range open { // no longer protected
		changes = append(changes, alert.Change{Rule: alert.RPO, Instance: st.GetInstance(), Database: st.GetDatabase(), At: now, By: by})
	}
	return s.alerts.Apply(ctx, changes)
}

// protections reads what the RPO rule needs of every protected database.
func (s *Service) protections(ctx context.Context) ([]alert.Protection, error) {
	policies := map[string]*policy.Policy{}
	err := s.policies.List(ctx, "", func() proto.Message { return &cofferv1.PolicyRecord{} }, func(key string, m proto.Message) error {
		rec := m.(*cofferv1.PolicyRecord)
		var p policy.Policy
		if err := json.Unmarshal([]byte(rec.GetJson()), &p); err != nil {
			s.log.ErrorContext(ctx, "stored policy is malformed; its databases' RPO is not evaluated",
				slog.String("policy", rec.GetName()), slog.Any("error", err))
			return nil
		}
		policies[rec.GetName()] = &p
		return nil
	})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	if _, ok := policies[policy.DefaultName]; !ok { // the default policy is not stored until changed
		def := policy.Default()
		policies[policy.DefaultName] = &def
	}
	schedules := map[string]*cofferv1.ScheduleState{}
	err = s.schedule.List(ctx, "", func() proto.Message { return &cofferv1.ScheduleState{} }, func(key string, m proto.Message) error {
		schedules[key] = m.(*cofferv1.ScheduleState)
		return nil
	})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []alert.Protection
	err = s.protected.List(ctx, "", func() proto.Message { return &cofferv1.ProtectedItem{} }, func(key string, m proto.Message) error {
		it := m.(*cofferv1.ProtectedItem)
		if it.GetState() != cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
			return nil
		}
		p, ok := policies[it.GetPolicy()]
		if !ok {
			return nil // a policy being deleted: nothing to measure against
		}
		st := schedules[key]
		d := alert.Protection{Instance: it.GetDatabase().GetInstance(), Database: it.GetDatabase().GetDatabase(), Policy: p,
			LogPaused: st.GetLogPaused()}
		if t := it.GetProtectedAt(); t != nil {
			d.ProtectedAt = t.AsTime()
		}
		if t := st.GetLastBackupAt(); t != nil {
			d.LastBackup = t.AsTime()
		}
		out = append(out, d)
		return nil
	})
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, fmt.Errorf("list protected databases: %w", err)
	}
	return out, nil
}
