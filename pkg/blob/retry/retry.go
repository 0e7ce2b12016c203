// Package retry wraps a [blob.Store] so that a store that fails for a
// while (an object store restarting, a network that drops) costs a wait,
// not a failed backup: every call is tried again with exponential backoff
// (backoff/v4) until it succeeds, fails in a way no retry mends, or the
// time allowed runs out; then it fails with the last error, saying how
// long it tried.
//
// What is tried again:
//   - Put, when its reader can be rewound ([io.Seeker]) and the failure is
//     the store's: a reader that fails, or yields more or fewer bytes than
//     the size given, is the caller's fault and fails at once;
//   - opening a Get or a GetRange (a read that fails after it opened is
//     the caller's to retry);
//   - Stat and Delete;
//   - List, resuming after the last key it handed to fn, so that fn never
//     sees a key twice; an error of fn's own stops it at once.
//
// [blob.ErrNotExist], [blob.ErrRange], [blob.ErrInvalidKey] and the end of
// the caller's context are answers, not failures: they are returned at
// once.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Config says how long a Store keeps trying.
type Config struct {
	// For is how long one call keeps trying before it fails; default 3
	// minutes. A store down for longer fails the calls made meanwhile.
	For time.Duration
	// First is the wait before the first retry; each later one doubles,
	// up to Max. Defaults 250ms and 15s.
	First, Max time.Duration
	// Logger is told of each failure that is tried again; nil logs
	// nothing.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.For == 0 {
		c.For = 3 * time.Minute
	}
	if c.First == 0 {
		c.First = 250 * time.Millisecond
	}
	if c.Max == 0 {
		c.Max = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.For < 0 || c.First < 0 || c.Max < 0 {
		errs = append(errs, errors.New("retry durations must not be negative"))
	}
	if c.First > 0 && c.Max > 0 && c.First > c.Max {
		errs = append(errs, fmt.Errorf("first retry wait %v is longer than the longest %v", c.First, c.Max))
	}
	return errors.Join(errs...)
}

// Store is a blob.Store that tries its calls again.
type Store struct {
	next blob.Store
	cfg  Config
}

var _ blob.Store = (*Store)(nil)

// New wraps next.
func New(next blob.Store, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("retry: %w", err)
	}
	return &Store{next: next, cfg: cfg}, nil
}

// final reports whether err is an answer rather than a failure.
func final(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, blob.ErrNotExist) || errors.Is(err, blob.ErrRange) ||
		errors.Is(err, blob.ErrInvalidKey) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// do runs op until it succeeds, returns a final error (or one marked
// backoff.Permanent), or the time allowed runs out.
func (s *Store) do(ctx context.Context, what, key string, op func() error) error {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(s.cfg.First), backoff.WithMaxInterval(s.cfg.Max),
		backoff.WithMaxElapsedTime(s.cfg.For))
	start := time.Now()
	tries := 0
	err := backoff.RetryNotify(func() error {
		tries++
		err := op()
		if err != nil && final(ctx, err) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		s.cfg.Logger.WarnContext(ctx, "object store call failed; trying again", "op", what, "key", key, "try", tries, "wait", wait, "err", err)
	})
	switch {
	case err == nil:
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		// the caller gave up: say so, whatever the store said last
		return fmt.Errorf("%s %s: %w (last failure: %w)", what, key, ctx.Err(), err)
	case tries > 1 && !final(ctx, err):
		return fmt.Errorf("%s %s: gave up after %d tries in %v: %w", what, key, tries, time.Since(start).Round(time.Millisecond), err)
	}
	return err
}

// Put stores the object, trying again when r can be rewound.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	seeker, ok := r.(io.Seeker)
	var start int64
	if ok {
		var err error
		start, err = seeker.Seek(0, io.SeekCurrent)
		ok = err == nil
	}
	if !ok {
		// one try: what was read cannot be read again
		err := s.next.Put(ctx, key, r, size)
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("put %s: %w (last failure: %w)", key, ctx.Err(), err)
		}
		return err
	}
	first := true
	return s.do(ctx, "put", key, func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return backoff.Permanent(fmt.Errorf("put %s: rewind the data to try again: %w", key, err))
			}
		}
		first = false
		w := &watched{r: r}
		err := s.next.Put(ctx, key, w, size)
		switch {
		case err == nil:
		case w.err != nil && !errors.Is(err, w.err):
			return backoff.Permanent(fmt.Errorf("put %s: %w (the store said: %w)", key, w.err, err))
		case w.callersFault(size):
			return backoff.Permanent(err)
		}
		return err
	})
}

// watched is a Put's reader, watched to tell the caller's faults from the
// store's.
type watched struct {
	r   io.Reader
	n   int64
	eof bool
	err error // the reader's own failure
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.n += int64(n)
	switch {
	case err == io.EOF:
		w.eof = true
	case err != nil:
		w.err = err
	}
	return n, err
}

// callersFault reports whether the reader failed, or yielded other than
// size bytes: no retry mends that.
func (w *watched) callersFault(size int64) bool {
	return w.err != nil || w.n > size || w.eof && w.n != size || size < 0
}

// Get opens the object, trying the opening again.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get", key, func() (err error) {
		rc, err = s.next.Get(ctx, key)
		return err
	})
	return rc, err
}

// GetRange opens the range, trying the opening again.
func (s *Store) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get range", key, func() (err error) {
		rc, err = s.next.GetRange(ctx, key, off, length)
		return err
	})
	return rc, err
}

// Stat describes the object, trying again.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	var info blob.Info
	err := s.do(ctx, "stat", key, func() (err error) {
		info, err = s.next.Stat(ctx, key)
		return err
	})
	return info, err
}

// Delete removes the object, trying again.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "delete", key, func() error { return s.next.Delete(ctx, key) })
}

// List lists the objects under prefix, resuming after the last key fn
// was given when the store fails part-way.
func (s *Store) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	var (
		last    string
		started bool
		fnErr   error
	)
	return s.do(ctx, "list", prefix, func() error {
		err := s.next.List(ctx, prefix, func(info blob.Info) error {
			if started && info.Key <= last {
				return nil // handed to fn before the store failed
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, started = info.Key, true
			return nil
		})
		if fnErr != nil {
			return backoff.Permanent(fnErr)
		}
		return err
	})
}
