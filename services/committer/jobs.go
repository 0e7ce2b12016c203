package committer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// maxCASAttempts bounds the compare-and-set retries of one job update;
// beyond it the event is redelivered later.
const maxCASAttempts = 16

// facts is what any job event says of its job.
type facts struct {
	kind       cofferv1.JobKind
	database   *cofferv1.DatabaseRef
	target     *cofferv1.DatabaseRef
	backupType cofferv1.BackupType
	at         time.Time
	traceID    string
}

// Bounds of a job record's history: its last steps and log lines, each
// line cut to maxLogLineLen bytes.
const (
	maxJobSteps    = 50
	maxJobLogLines = 100
	maxLogLineLen  = 512
)

func final(s cofferv1.JobState) bool {
	return s == cofferv1.JobState_JOB_STATE_SUCCEEDED || s == cofferv1.JobState_JOB_STATE_FAILED ||
		s == cofferv1.JobState_JOB_STATE_CANCELLED
}

// stateOutcome names a final state as a step's outcome.
var stateOutcome = map[cofferv1.JobState]string{cofferv1.JobState_JOB_STATE_SUCCEEDED: "succeeded",
	cofferv1.JobState_JOB_STATE_FAILED: "failed", cofferv1.JobState_JOB_STATE_CANCELLED: "cancelled"}

// beginStep ends j's running step, if another, as done at at and begins
// step, keeping the last maxJobSteps.
func beginStep(j *cofferv1.Job, step string, at time.Time) {
	if step == "" {
		return
	}
	if n := len(j.Steps); n > 0 {
		last := j.Steps[n-1]
		if last.GetEndedAt() == nil && last.GetName() == step {
			return
		}
		endStep(j, "done", at)
	}
	j.Steps = append(j.Steps, &cofferv1.JobStep{Name: step, BeganAt: timestamppb.New(at)})
	if over := len(j.Steps) - maxJobSteps; over > 0 {
		j.Steps = append(j.Steps[:0], j.Steps[over:]...)
	}
}

// endStep ends j's running step, if any, with outcome at at.
func endStep(j *cofferv1.Job, outcome string, at time.Time) {
	n := len(j.Steps)
	if n == 0 || j.Steps[n-1].GetEndedAt() != nil {
		return
	}
	j.Steps[n-1].EndedAt, j.Steps[n-1].Outcome = timestamppb.New(at), outcome
}

// ended ends j's running step with j's final state.
func ended(j *cofferv1.Job, f facts) {
	at := f.at
	if at.IsZero() && j.UpdatedAt != nil {
		at = j.UpdatedAt.AsTime()
	}
	endStep(j, stateOutcome[j.State], at)
}

// fill sets what j does not know yet from f, and moves its times: created
// at the earliest event seen, updated at the latest.
func fill(j *cofferv1.Job, f facts) {
	if j.Kind == cofferv1.JobKind_JOB_KIND_UNSPECIFIED {
		j.Kind = f.kind
	}
	if j.Database == nil && f.database != nil && (f.database.Instance != "" || f.database.Database != "") {
		j.Database = f.database
	}
	if j.Target == nil && f.target != nil && (f.target.Instance != "" || f.target.Database != "") {
		j.Target = f.target
	}
	if j.BackupType == cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED {
		j.BackupType = f.backupType
	}
	if j.TraceId == "" {
		j.TraceId = f.traceID
	}
	if !f.at.IsZero() {
		if j.CreatedAt == nil || f.at.Before(j.CreatedAt.AsTime()) {
			j.CreatedAt = timestamppb.New(f.at)
		}
		if j.UpdatedAt == nil || f.at.After(j.UpdatedAt.AsTime()) {
			j.UpdatedAt = timestamppb.New(f.at)
		}
	}
}

// applyQueued records a job put on the work queue. A job that some other
// event created first keeps its state.
func applyQueued(j *cofferv1.Job, e *cofferv1.JobQueued, f facts) {
	fill(j, f)
	if j.Detail == "" {
		j.Detail = e.GetDetail()
	}
	if j.State == cofferv1.JobState_JOB_STATE_UNSPECIFIED {
		j.State = cofferv1.JobState_JOB_STATE_QUEUED
	}
}

// applyProgress moves a job to running. Progress only goes up, so a
// report overtaken by a later one changes nothing; a report after the
// outcome is ignored.
func applyProgress(j *cofferv1.Job, e *cofferv1.JobProgress, f facts) {
	if final(j.State) {
		return
	}
	fill(j, f)
	j.State = cofferv1.JobState_JOB_STATE_RUNNING
	if e.GetPercent() >= j.Percent {
		j.Percent = e.GetPercent()
		j.Bytes = e.GetBytes()
		j.Step = e.GetStep()
		beginStep(j, e.GetStep(), f.at)
	}
	if e.GetNoCancel() != "" {
		j.NoCancel = e.GetNoCancel()
	}
}

// applyFailed records a failure. The first outcome stands: a job that
// already succeeded or failed keeps it.
func applyFailed(j *cofferv1.Job, e *cofferv1.JobFailed, f facts) {
	if final(j.State) {
		return
	}
	fill(j, f)
	j.State = cofferv1.JobState_JOB_STATE_FAILED
	if by := e.GetCancelledBy(); by != "" {
		j.State, j.CancelledBy = cofferv1.JobState_JOB_STATE_CANCELLED, by
	}
	j.Error = e.GetReason()
	j.Service = e.GetService()
	ended(j, f)
}

// applySucceeded records a success, with the recovery point a backup
// committed.
func applySucceeded(j *cofferv1.Job, bytes int64, recoveryPoint string, f facts) {
	if final(j.State) {
		if j.State == cofferv1.JobState_JOB_STATE_SUCCEEDED && j.RecoveryPoint == "" {
			j.RecoveryPoint = recoveryPoint
		}
		return
	}
	fill(j, f)
	j.State = cofferv1.JobState_JOB_STATE_SUCCEEDED
	j.Percent = 100
	j.Bytes = bytes
	j.Step = ""
	j.RecoveryPoint = recoveryPoint
	ended(j, f)
}

// updateJob reads job id (a new Job if there is none), lets apply change
// it, and writes it back if it changed, compare-and-set, retrying on a
// conflicting write.
func (s *Service) updateJob(ctx context.Context, id string, apply func(j *cofferv1.Job)) error {
	key := catalog.Key(id)
	for attempt := 1; ; attempt++ {
		j := &cofferv1.Job{}
		rev, err := s.jobs.Get(ctx, key, j)
		exists := err == nil
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return fmt.Errorf("read job %s: %w", id, err)
		}
		if !exists {
			j = &cofferv1.Job{Id: id}
		}
		before := proto.Clone(j)
		apply(j)
		if exists && proto.Equal(before, j) {
			return nil
		}
		if exists {
			_, err = s.jobs.Update(ctx, key, j, rev)
		} else {
			_, err = s.jobs.Create(ctx, key, j)
		}
		if err == nil {
			if !final(before.(*cofferv1.Job).GetState()) && final(j.State) {
				// the write that records the outcome happens once per job
				s.cfg.Metrics.JobFinished(j.Kind, j.BackupType, j.State == cofferv1.JobState_JOB_STATE_SUCCEEDED)
			}
			return nil
		}
		if (!errors.Is(err, catalog.ErrConflict) && !errors.Is(err, catalog.ErrExists)) || attempt == maxCASAttempts {
			return fmt.Errorf("write job %s: %w", id, err)
		}
	}
}

// jobID returns an event's job id; an event about a job without one can
// never be recorded.
func jobID(meta *cofferv1.EventMeta) (string, error) {
	if id := meta.GetJobId(); id != "" {
		return id, nil
	}
	return "", bus.Permanent(errors.New("event has no job id"))
}

func eventFacts(ctx context.Context, meta *cofferv1.EventMeta) facts {
	f := facts{}
	if t := meta.GetTime(); t != nil {
		f.at = t.AsTime()
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		f.traceID = sc.TraceID().String()
	}
	return f
}

func (s *Service) jobQueued(ctx context.Context, e *cofferv1.JobQueued) error {
	id, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database, f.target, f.backupType = e.GetKind(), e.GetDatabase(), e.GetTarget(), e.GetBackupType()
	return s.updateJob(ctx, id, func(j *cofferv1.Job) { applyQueued(j, e, f) })
}

func (s *Service) jobProgress(ctx context.Context, e *cofferv1.JobProgress) error {
	id, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database, f.target, f.backupType = e.GetKind(), e.GetDatabase(), e.GetTarget(), e.GetBackupType()
	return s.updateJob(ctx, id, func(j *cofferv1.Job) { applyProgress(j, e, f) })
}

func (s *Service) jobFailed(ctx context.Context, e *cofferv1.JobFailed) error {
	id := e.GetMeta().GetJobId()
	if id == "" {
		// A failure tied to no job (a poison message without one) has
		// nothing to record here; the gateway shows it as an alert.
		return nil
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database, f.target, f.backupType = e.GetKind(), e.GetDatabase(), e.GetTarget(), e.GetBackupType()
	return s.updateJob(ctx, id, func(j *cofferv1.Job) { applyFailed(j, e, f) })
}

func (s *Service) restoreCompleted(ctx context.Context, e *cofferv1.RestoreCompleted) error {
	id, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database, f.target = cofferv1.JobKind_JOB_KIND_RESTORE, e.GetSource(), e.GetTarget()
	return s.updateJob(ctx, id, func(j *cofferv1.Job) { applySucceeded(j, e.GetBytes(), "", f) })
}

// endFailed records job jid, of what f says, as failed for reason (unless
// it already has its outcome) and publishes its JobFailed, so that a
// person sees it.
func (s *Service) endFailed(ctx context.Context, jid string, f facts, reason string) error {
	failed := &cofferv1.JobFailed{Meta: event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
		Kind: f.kind, Database: f.database, Reason: reason, Service: Name}
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if !final(j.State) {
			applyFailed(j, failed, f)
		}
	}); err != nil {
		return err
	}
	return s.bus.Publish(ctx, cofferv1.SubjectJobFailed, failed, failed.Meta.EventId)
}

// jobCancel records a person's request to cancel a job. A queued job is
// cancelled at once, and its JobFailed (cancelled) published so that the
// scheduler frees its slot; a running one is marked for the service
// running it, which stops it and reports it cancelled. A job the
// committer does not know, or one already ended, is left as it is: the
// gateway answered the person already.
func (s *Service) jobCancel(ctx context.Context, e *cofferv1.JobCancelRequested) error {
	id, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	j, err := s.recordedJob(ctx, id)
	if err != nil || j == nil {
		if j == nil && err == nil {
			s.log.WarnContext(ctx, "cancel of an unknown job ignored", slog.String(telemetry.JobIDKey, id))
		}
		return err
	}
	by := cmp.Or(e.GetBy(), "unknown")
	f := eventFacts(ctx, e.GetMeta())
	if j.GetState() == cofferv1.JobState_JOB_STATE_QUEUED {
		failed := &cofferv1.JobFailed{Meta: event.Meta(event.ID("failed", id, Name), id, s.cfg.Now()),
			Kind: j.GetKind(), Database: j.GetDatabase(), Target: j.GetTarget(), BackupType: j.GetBackupType(),
			Reason: "cancelled by " + by + " before it started", Service: Name, CancelledBy: by}
		return s.reportFailure(ctx, id, failed, f)
	}
	return s.updateJob(ctx, id, func(j *cofferv1.Job) {
		if j.GetState() == cofferv1.JobState_JOB_STATE_RUNNING && j.CancelRequestedBy == "" {
			j.CancelRequestedBy = by
		}
	})
}

// recordedJob reads job id; nil (and no error) when it is not recorded.
func (s *Service) recordedJob(ctx context.Context, id string) (*cofferv1.Job, error) {
	j := &cofferv1.Job{}
	switch _, err := s.jobs.Get(ctx, catalog.Key(id), j); {
	case errors.Is(err, catalog.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return j, nil
}

// cancelledBy returns who cancelled job id, "" when it is not cancelled.
func (s *Service) cancelledBy(ctx context.Context, id string) (string, error) {
	j, err := s.recordedJob(ctx, id)
	if err != nil || j.GetState() != cofferv1.JobState_JOB_STATE_CANCELLED {
		return "", err
	}
	return cmp.Or(j.GetCancelledBy(), "unknown"), nil
}

// jobLogged adds log lines to their job's record, in time order, keeping
// the last maxJobLogLines. Lines about a job the committer has not
// recorded are dropped: a log line alone does not make a job.
func (s *Service) jobLogged(ctx context.Context, e *cofferv1.JobLogged) error {
	id, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	if j, err := s.recordedJob(ctx, id); err != nil || j == nil {
		return err
	}
	return s.updateJob(ctx, id, func(j *cofferv1.Job) { addLogLines(j, e.GetLines()) })
}

// addLogLines adds lines to j's log, but not a line it has already (of a
// redelivered batch).
func addLogLines(j *cofferv1.Job, lines []*cofferv1.JobLogLine) {
	for _, l := range lines {
		l = proto.CloneOf(l)
		if len(l.Message) > maxLogLineLen {
			l.Message = strings.ToValidUTF8(l.Message[:maxLogLineLen], "") + "…"
		}
		if slices.ContainsFunc(j.Log, func(o *cofferv1.JobLogLine) bool { return proto.Equal(o, l) }) {
			continue // a redelivered batch
		}
		j.Log = append(j.Log, l)
	}
	slices.SortStableFunc(j.Log, func(a, b *cofferv1.JobLogLine) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
	if over := len(j.Log) - maxJobLogLines; over > 0 {
		j.Log = append(j.Log[:0], j.Log[over:]...)
	}
}
