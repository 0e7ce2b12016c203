package streamer

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// cancelled is the cause of a job's context that a person's cancel
// ended (Job.cancel_requested_by, or a job the committer cancelled while
// it was queued).
type cancelled struct{ by string }

func (c *cancelled) Error() string { return "cancelled by " + c.by }

// cancelledBy returns who cancelled the job of ctx, "" when no one did
// (a shutdown is no cancel: its work is handed back).
func cancelledBy(ctx context.Context) string {
	var c *cancelled
	if errors.As(context.Cause(ctx), &c) {
		return c.by
	}
	return ""
}

// jobControl is the cancel of one running job: its context's, until the
// job refuses any cancel from some point on.
type jobControl struct {
	log    *slog.Logger
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	noCancel string // why the job can no longer be cancelled
	refused  bool   // a cancel came after that, and was refused
}

type controlKey struct{}

// request cancels the job for by, unless it can no longer be cancelled.
func (jc *jobControl) request(ctx context.Context, by string) {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	if jc.noCancel != "" {
		if !jc.refused {
			jc.refused = true
			jc.log.WarnContext(ctx, "cancel refused", slog.String("by", by), slog.String("reason", jc.noCancel))
		}
		return
	}
	if context.Cause(ctx) == nil {
		jc.log.InfoContext(ctx, "cancel requested; stopping the job", slog.String("by", by))
	}
	jc.cancel(&cancelled{by: by})
}

// refuseCancel makes the job of ctx refuse every cancel from now on, for
// why. It reports false when a cancel came first: the job must stop.
func refuseCancel(ctx context.Context, why string) bool {
	jc, _ := ctx.Value(controlKey{}).(*jobControl)
	if jc == nil {
		return ctx.Err() == nil
	}
	jc.mu.Lock()
	defer jc.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	jc.noCancel = why
	return true
}

// noCancel returns why the job of ctx can no longer be cancelled, "" while
// it can.
func noCancel(ctx context.Context) string {
	jc, _ := ctx.Value(controlKey{}).(*jobControl)
	if jc == nil {
		return ""
	}
	jc.mu.Lock()
	defer jc.mu.Unlock()
	return jc.noCancel
}

// cancellable returns ctx for job jid, ended (cause *cancelled) when its
// record asks for a cancel: the job's key in the jobs bucket is watched
// while the job runs, by whichever streamer runs it, and the current
// record is read before cancellable returns, so that a job cancelled
// before it started stops at once. stop ends the watch. A watch that
// cannot start leaves the job running without a cancel, and says so.
func (s *Service) cancellable(ctx context.Context, jid string) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	log := s.log.With(slog.String(telemetry.JobIDKey, jid))
	jc := &jobControl{log: log, cancel: cancel}
	ctx = context.WithValue(ctx, controlKey{}, jc)
	key := catalog.Key(jid)
	wctx, stopWatch := context.WithCancel(ctx)
	updates, err := s.jobs.Watch(wctx, key)
	if err != nil {
		log.WarnContext(ctx, "job not watched for a cancel; it runs without one", slog.Any("error", err))
		return ctx, func() { stopWatch(); cancel(nil) }
	}
	synced := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		defer once.Do(func() { close(synced) })
		live := false // past the record as it was when the job started
		for u := range updates {
			if u.Synced {
				live = true
				once.Do(func() { close(synced) })
				continue
			}
			if u.Key != key || u.Deleted {
				continue
			}
			var j cofferv1.Job
			if u.Decode(&j) != nil {
				continue
			}
			by := j.GetCancelRequestedBy()
			if j.GetState() == cofferv1.JobState_JOB_STATE_CANCELLED {
				if !live {
					continue // cancelled while queued: the job skips it (jobDone)
				}
				by = cmp.Or(j.GetCancelledBy(), "unknown")
			}
			if by != "" {
				jc.request(ctx, by)
			}
		}
	}()
	select {
	case <-synced:
	case <-ctx.Done():
	}
	return ctx, func() { stopWatch(); <-done; cancel(nil) }
}

// work is a work message: every one carries its job id in its meta.
type work interface {
	proto.Message
	GetMeta() *cofferv1.EventMeta
}

// runWork decodes m into req and runs it with run, cancellable by a
// person (cancellable).
func runWork[T work](s *Service, ctx context.Context, m *bus.Message, req T, run func(context.Context, *bus.Message, T) error) error {
	if err := m.Decode(req); err != nil {
		return err
	}
	ctx, stop := s.cancellable(ctx, req.GetMeta().GetJobId())
	defer stop()
	return run(ctx, m, req)
}
