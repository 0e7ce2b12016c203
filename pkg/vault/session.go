package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Writer sessions. A process that writes to the vault (a streamer's
// backup job, a collection that repacks) holds a session while it does:
// an object sessions/<session id> that it stores when it starts, stores
// again every refresh interval so that its ModTime moves, and deletes when
// it is done. Garbage collection reads them to know which writers may have
// deduplicated against chunks it condemned: see collect.go. The object is
// plain JSON (sessionRecord): nothing in it is secret.
//
// Only the store's clock is compared with the store's clock: a collector
// takes a session for dead when its ModTime is older than its lease by the
// ModTime of the collector's own session, stored a moment before. The
// writer keeps its side without comparing clocks either: it measures, on
// its own monotonic clock, the time since it sent its last refresh that
// succeeded, and gives the session up (failing its writers) a margin
// before the lease could have run out.
const (
	sessionsPrefix = "sessions/"
	// maxSessionRecord bounds a session object: room for the ids of a
	// few thousand condemned generations.
	maxSessionRecord = 1 << 20
	// DefaultSessionRefresh is how often a session is refreshed unless
	// its options say otherwise.
	DefaultSessionRefresh = time.Minute
	// sessionLeaseRefreshes is a lease in refresh intervals, by default.
	sessionLeaseRefreshes = 10
)

var (
	// ErrSessionExpired is matched by the error a Writer, and
	// [Session.Close], return when the session could not be refreshed
	// within its lease: garbage collection may since have taken its
	// writer for dead and deleted chunks the writer deduplicated against,
	// so the stream must not be committed.
	ErrSessionExpired = errors.New("vault session expired: not refreshed within its lease")

	errSessionClosed = errors.New("vault session closed")
)

// sessionRecord is the content of a session object.
type sessionRecord struct {
	// LeaseMS is how long, in milliseconds, the session stays live
	// without being refreshed.
	LeaseMS int64 `json:"lease_ms"`
	// Known lists the condemned generations the session's process had
	// loaded before it started writing: the session's writers never
	// deduplicate against the chunk locations they condemn. Absent until
	// the generations are loaded, when the session knows none.
	Known []string `json:"known,omitempty"`
	// Collector marks the session of a garbage collection, which runs
	// alone.
	Collector bool `json:"collector,omitempty"`
}

// SessionOptions tunes a Session. The zero value is ready to use.
type SessionOptions struct {
	// Refresh is how often the session's object is stored again while the
	// session is open. Zero means DefaultSessionRefresh (a minute).
	Refresh time.Duration
	// Lease is how long the session may go unrefreshed before garbage
	// collection takes its writer for dead. Zero, or less than three
	// refreshes, means ten refreshes.
	Lease time.Duration
}

func (o *SessionOptions) setDefaults() {
	if o.Refresh <= 0 {
		o.Refresh = DefaultSessionRefresh
	}
	if o.Lease < 3*o.Refresh {
		o.Lease = sessionLeaseRefreshes * o.Refresh
	}
}

// Session is a writer's registration with the vault, which keeps garbage
// collection from deleting the chunks its writers deduplicate against:
// see [Vault.OpenSession].
type Session struct {
	v      *Vault
	id     string
	opts   SessionOptions
	record []byte // the object stored at each refresh
	// ctx ends when the session does: closed, or expired
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the refresher stops
	// known are the condemned generations loaded when it opened
	known []string

	mu     sync.Mutex
	lastOK time.Time // when the last refresh that succeeded was sent (monotonic)
	closed bool
}

// OpenSession registers a writer session with the vault and returns it,
// open: until [Session.Close], garbage collection deletes no chunk the
// session's writers may have deduplicated against, however long they
// take, as long as the session is refreshed (in the background, every
// SessionOptions.Refresh). A backup opens one before its writers and
// closes it once its draft is stored ([Vault.PutDraft]), so that its
// chunks are protected from the first deduplication until a draft or
// manifest names them; writers take it as WriterOptions.Session.
//
// Opening a session also brings this process's view of the vault up to
// date: the index objects other processes stored, and the chunk locations
// garbage collection condemned, which the session's writers (and every
// writer of this process from now on) store again rather than
// deduplicate against.
//
// A session that cannot be refreshed within its lease expires: its
// context ends with [ErrSessionExpired], its writers fail, and Close
// returns that error.
func (v *Vault) OpenSession(ctx context.Context, opts SessionOptions) (*Session, error) {
	return v.openSession(ctx, opts, false)
}

// openSession opens a session, a collection's if collector is true.
func (v *Vault) openSession(ctx context.Context, opts SessionOptions, collector bool) (*Session, error) {
	opts.setDefaults()
	s := &Session{v: v, id: newObjectID(), opts: opts, done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	sent := time.Now()
	if err := s.put(ctx, sessionRecord{LeaseMS: opts.Lease.Milliseconds(), Collector: collector}); err != nil {
		s.cancel(err)
		return nil, fmt.Errorf("open vault session: %w", err)
	}
	s.lastOK = sent
	if !collector {
		// from here the collectors see a session that knows no
		// generation, which holds every one back (indexCurrent)
		v.writing.add(s, time.Now())
	}
	known, err := v.loadCondemned(ctx, !collector)
	if err == nil {
		sent = time.Now()
		err = s.put(ctx, sessionRecord{LeaseMS: opts.Lease.Milliseconds(), Known: known, Collector: collector})
	}
	if err != nil {
		v.writing.remove(s)
		s.cancel(err)
		s.delete(ctx)
		return nil, fmt.Errorf("open vault session: %w", err)
	}
	s.mu.Lock() // openBefore reads lastOK from other sessions' openings
	s.lastOK, s.known = sent, known
	s.mu.Unlock()
	go s.refresh()
	return s, nil
}

// ID is the session's id, its object's name under sessions/.
func (s *Session) ID() string { return s.id }

// Context returns a context that ends when the session does: when it is
// closed, or when it expires, its cause then matching [ErrSessionExpired].
func (s *Session) Context() context.Context { return s.ctx }

// Err returns nil while the session is open, and why it ended once it
// has.
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Close ends the session and deletes its object. It returns an error
// matching [ErrSessionExpired] if the session expired before, in which
// case what its writers stored must not be committed; or the store's
// error if the object could not be deleted (collections then wait for the
// session's lease to run out). Later calls return nil.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.v.writing.remove(s)
	s.cancel(errSessionClosed)
	<-s.done
	if err := context.Cause(s.ctx); errors.Is(err, ErrSessionExpired) {
		s.delete(ctx)
		return fmt.Errorf("close vault session %s: %w", s.id, err)
	}
	if err := s.delete(ctx); err != nil {
		return fmt.Errorf("close vault session %s: %w", s.id, err)
	}
	return nil
}

func (s *Session) put(ctx context.Context, r sessionRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.record = b
	return s.putRecord(ctx)
}

func (s *Session) putRecord(ctx context.Context) error {
	return s.v.store.Put(ctx, sessionsPrefix+s.id, bytes.NewReader(s.record), int64(len(s.record)))
}

func (s *Session) delete(ctx context.Context) error {
	return s.v.store.Delete(ctx, sessionsPrefix+s.id)
}

// validUntil is when, on this process's monotonic clock, the session must
// be given up unless refreshed: a quarter of the lease before the lease
// could run out for a collector, since a refresh's ModTime is no earlier
// than when it was sent.
func (s *Session) validUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastOK.Add(s.opts.Lease - s.opts.Lease/4)
}

// refresh stores the session's object every Refresh until the session
// ends, and expires the session if none succeeds in time.
func (s *Session) refresh() {
	defer close(s.done)
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	for {
		until := s.validUntil()
		expiry := time.NewTimer(time.Until(until))
		select {
		case <-s.ctx.Done():
			expiry.Stop()
			return
		case <-expiry.C:
			s.cancel(ErrSessionExpired)
			return
		case <-t.C:
		}
		expiry.Stop()
		sent := time.Now()
		if !sent.Before(until) {
			// late (the process was paused): a collector may have taken
			// the session for dead, and it must not come back
			s.cancel(ErrSessionExpired)
			return
		}
		// not cancelled by Close: a Put cut short may still land after
		// the Delete that follows
		ctx, cancel := context.WithDeadline(context.WithoutCancel(s.ctx), until)
		err := s.putRecord(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.lastOK = sent
			s.mu.Unlock()
		}
	}
}

// liveSession is a session a collector found live.
type liveSession struct {
	id        string
	known     map[string]bool // nil: knows no generation
	collector bool
}

// sessions lists the sessions in the store, taking as the time now, on
// the store's clock, the ModTime of session self, just stored by the
// caller: it returns that time and the live sessions, and deletes the
// dead ones (not refreshed within their lease), reporting how many it
// deleted. A session object it cannot parse counts as live with the
// default lease and knowing nothing, so that it holds collection back
// rather than let it delete what a writer of another version may need.
func (v *Vault) sessions(ctx context.Context, self string) (now time.Time, live []liveSession, dead int, err error) {
	type listed struct {
		id      string
		modTime time.Time
		rec     sessionRecord
	}
	var all []listed
	found := false
	err = v.store.List(ctx, sessionsPrefix, func(i blob.Info) error {
		id := strings.TrimPrefix(i.Key, sessionsPrefix)
		if id == self {
			now, found = i.ModTime, true
		}
		raw, err := readSmall(ctx, v.store, i.Key, maxSessionRecord)
		if errors.Is(err, blob.ErrNotExist) {
			return nil // closed since the listing
		}
		if err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		var rec sessionRecord
		if json.Unmarshal(raw, &rec) != nil || rec.LeaseMS <= 0 {
			rec = sessionRecord{LeaseMS: (sessionLeaseRefreshes * DefaultSessionRefresh).Milliseconds()}
		}
		all = append(all, listed{id, i.ModTime, rec})
		return nil
	})
	if err != nil {
		return now, nil, 0, fmt.Errorf("list sessions: %w", err)
	}
	if !found {
		return now, nil, 0, fmt.Errorf("list sessions: own session %s not found", self)
	}
	for _, l := range all {
		if now.Sub(l.modTime) > time.Duration(l.rec.LeaseMS)*time.Millisecond {
			if err := v.store.Delete(ctx, sessionsPrefix+l.id); err != nil {
				return now, nil, dead, fmt.Errorf("delete dead session: %w", err)
			}
			dead++
			continue
		}
		s := liveSession{id: l.id, collector: l.rec.Collector}
		if l.rec.Known != nil {
			s.known = make(map[string]bool, len(l.rec.Known))
			for _, g := range l.rec.Known {
				s.known[g] = true
			}
		}
		live = append(live, s)
	}
	return now, live, dead, nil
}
