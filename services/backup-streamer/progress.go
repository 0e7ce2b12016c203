package streamer

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// progress reports a job's progress as JobProgress events, at most one per
// Config.ProgressInterval and only when the percentage moved. The
// idempotency key is the job, step and whole percentage, so a job run again
// after a redelivery does not report the same progress twice. A report
// that cannot be published is logged and dropped: progress is advisory.
type progress struct {
	s    *Service
	ctx  context.Context
	log  *slog.Logger
	jid  string
	base *cofferv1.JobProgress // kind, database, target, backup type

	mu      sync.Mutex
	percent float64 // last published
	at      time.Time
	sent    bool
}

func (s *Service) newProgress(ctx context.Context, log *slog.Logger, jid string, base *cofferv1.JobProgress) *progress {
	return &progress{s: s, ctx: ctx, log: log, jid: jid, base: base}
}

// report publishes the job's progress unless it is too soon after the last
// report or the percentage has not moved; force publishes anyway (once per
// step and percentage).
func (p *progress) report(step string, percent float64, bytes int64, force bool) {
	percent = math.Max(0, math.Min(100, percent))
	p.mu.Lock()
	now := p.s.cfg.Now()
	if p.sent && !force && (percent <= p.percent || now.Sub(p.at) < p.s.cfg.ProgressInterval) {
		p.mu.Unlock()
		return
	}
	p.percent, p.at, p.sent = percent, now, true
	p.mu.Unlock()

	e := proto.CloneOf(p.base)
	e.NoCancel = noCancel(p.ctx)
	e.Meta = event.Meta(event.ID("progress", p.jid, step, strconv.Itoa(int(percent))), p.jid, now)
	e.Step, e.Percent, e.Bytes = step, percent, bytes
	if err := p.s.bus.Publish(p.ctx, cofferv1.SubjectJobProgress, e, e.Meta.EventId); err != nil {
		p.log.WarnContext(p.ctx, "progress not reported", slog.Any("error", err))
	}
}
