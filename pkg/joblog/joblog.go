package joblog

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Publisher stores an event under its idempotency key (bus.Bus does).
type Publisher interface {
	Publish(ctx context.Context, subject string, msg proto.Message, id string) error
}

// Bounds of what a Forwarder keeps between flushes: it flushes early
// once flushAt lines wait, and drops lines beyond maxPending (a service
// that cannot publish must not grow without end). A line is cut to
// maxLineLen bytes.
const (
	flushAt    = 100
	maxPending = 1000
	maxLineLen = 512
	// DefaultInterval is how long a line waits at most before it is
	// published.
	DefaultInterval = time.Second
)

// Forwarder forwards the log lines of one service about jobs. Create it
// with New, wrap the service's handler with Handler, and run Run beside
// the service.
type Forwarder struct {
	pub      Publisher
	service  string
	interval time.Duration
	nonce    string
	kick     chan struct{}

	mu      sync.Mutex
	pending map[string][]*cofferv1.JobLogLine // by job id
	n       int                               // lines pending
	seq     uint64
	dropped int64
}

// New returns a forwarder publishing service's lines on pub every
// interval (DefaultInterval when 0).
func New(pub Publisher, service string, interval time.Duration) *Forwarder {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Forwarder{pub: pub, service: service, interval: interval, nonce: rand.Text(),
		kick: make(chan struct{}, 1), pending: map[string][]*cofferv1.JobLogLine{}}
}

// Dropped counts the lines dropped: too many waiting, or not published.
func (f *Forwarder) Dropped() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

func (f *Forwarder) add(jobID string, l *cofferv1.JobLogLine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n >= maxPending {
		f.dropped++
		return
	}
	f.pending[jobID] = append(f.pending[jobID], l)
	f.n++
	if f.n == flushAt {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// Run publishes the waiting lines every interval, or sooner when many
// wait, until ctx ends; then it publishes what is left, for up to five
// seconds.
func (f *Forwarder) Run(ctx context.Context) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			f.Flush(fctx)
			return
		case <-t.C:
		case <-f.kick:
		}
		f.Flush(ctx)
	}
}

// Flush publishes the waiting lines now, one JobLogged per job. Lines
// that cannot be published are dropped (and counted): they are advisory,
// and logged already where the service's logs go.
func (f *Forwarder) Flush(ctx context.Context) {
	f.mu.Lock()
	batches := f.pending
	f.pending, f.n = map[string][]*cofferv1.JobLogLine{}, 0
	first := f.seq
	f.seq += uint64(len(batches))
	f.mu.Unlock()
	seq := first
	for jid, lines := range batches {
		seq++
		id := event.ID("logged", jid, f.service, f.nonce, strconv.FormatUint(seq, 10))
		e := &cofferv1.JobLogged{Meta: event.Meta(id, jid, time.Now()), Lines: lines}
		if err := f.pub.Publish(ctx, cofferv1.SubjectJobLogged, e, id); err != nil {
			f.mu.Lock()
			f.dropped += int64(len(lines))
			f.mu.Unlock()
		}
	}
}

// Handler returns h wrapped so that its records about jobs are forwarded
// too. Records h does not want (below its level) are still forwarded when
// at info level or above.
func (f *Forwarder) Handler(h slog.Handler) slog.Handler {
	return &handler{inner: h, f: f}
}

type handler struct {
	inner slog.Handler
	f     *Forwarder
	jobID string
	attrs string // the logger's own attributes, as key=value text
	group bool   // attributes from here on are inside a group
}

var _ slog.Handler = (*handler)(nil)

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.inner.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level < slog.LevelInfo {
		return err
	}
	jid := h.jobID
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == telemetry.JobIDKey && !h.group {
			jid = a.Value.String()
			return true
		}
		writeAttr(&b, a)
		return true
	})
	if jid == "" {
		return err
	}
	h.f.add(jid, &cofferv1.JobLogLine{Time: timestamppb.New(r.Time), Level: r.Level.String(),
		Service: h.f.service, Message: cut(b.String())})
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		if a.Key == telemetry.JobIDKey && !h.group {
			c.jobID = a.Value.String()
			continue
		}
		writeAttr(&b, a)
	}
	c.attrs = b.String()
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	c.group = c.group || name != ""
	return &c
}

// skipped are the attributes a job's record shows otherwise.
var skipped = map[string]bool{telemetry.InstanceKey: true, telemetry.DatabaseKey: true,
	telemetry.TraceIDKey: true, telemetry.SpanIDKey: true, "service": true}

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) || skipped[a.Key] {
		return
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			writeAttr(b, slog.Attr{Key: a.Key + "." + g.Key, Value: g.Value})
		}
		return
	}
	s := v.String()
	if strings.ContainsAny(s, " \"=") {
		s = strconv.Quote(s)
	}
	fmt.Fprintf(b, " %s=%s", a.Key, s)
}

func cut(s string) string {
	if len(s) <= maxLineLen {
		return s
	}
	return strings.ToValidUTF8(s[:maxLineLen], "") + "…"
}
