// Package retry wraps a [blob.Store] so that a store that fails for a
// while (an object store restarting, a network that drops) costs a wait,
// not a failed backup: every call is tried again with exponential backoff
// (backoff/v4) until it succeeds, fails in a way no retry mends, or the
// time allowed runs out; then it fails with the last error, saying how
// long it tried.
//
// What is tried again:
//   - Put and Create, when the reader can be rewound ([io.Seeker]) and the
//     failure is the store's: a reader that fails, or yields more or fewer
//     bytes than the size given, is the caller's fault and fails at once;
//     a Create that finds its own object, stored by a try that seemed to
//     fail, succeeds;
//   - opening a Get or a GetRange (a read that fails after it opened is
//     the caller's to retry);
//   - Stat and Delete;
//   - List, resuming after the last key it handed to fn, so that fn never
//     sees a key twice; an error of fn's own stops it at once.
//
// [blob.ErrNotExist], [blob.ErrExist], [blob.ErrRange], [blob.ErrInvalidKey] and the end of
// the caller's context are answers, not failures: they are returned at
// once.
package retry

import (
	"bytes"
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

var (
	_ blob.Store   = (*Store)(nil)
	_ blob.Creator = (*Store)(nil)
)

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
	return ctx.Err() != nil || errors.Is(err, blob.ErrNotExist) || errors.Is(err, blob.ErrRange) || errors.Is(err, blob.ErrExist) ||
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
	return s.put(ctx, "put", key, r, size, s.next.Put)
}

// Create stores the object if key holds none, trying again when r can be
// rewound. A try that failed may yet have stored the object, so that the
// next one finds the key taken: if the object there is byte for byte
// what r holds, that earlier try is taken to have succeeded and Create
// returns nil. So callers that must know they were first store content
// no one else could (a random nonce, an id of their own). A store that is
// not a [blob.Creator] gets [blob.Create]'s Stat and Put.
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, "create", key, r, size, func(ctx context.Context, key string, r io.Reader, size int64) error {
		return blob.Create(ctx, s.next, key, r, size)
	})
}

// put runs write, Put or Create, trying again when r can be rewound.
func (s *Store) put(ctx context.Context, what, key string, r io.Reader, size int64, write func(context.Context, string, io.Reader, int64) error) error {
	seeker, ok := r.(io.Seeker)
	var start int64
	if ok {
		var err error
		start, err = seeker.Seek(0, io.SeekCurrent)
		ok = err == nil
	}
	if !ok {
		// one try: what was read cannot be read again
		err := write(ctx, key, r, size)
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%s %s: %w (last failure: %w)", what, key, ctx.Err(), err)
		}
		return err
	}
	rewind := func() error {
		if _, err := seeker.Seek(start, io.SeekStart); err != nil {
			return backoff.Permanent(fmt.Errorf("%s %s: rewind the data to try again: %w", what, key, err))
		}
		return nil
	}
	first, mayHaveStored := true, false
	return s.do(ctx, what, key, func() error {
		if !first {
			if err := rewind(); err != nil {
				return err
			}
		}
		first = false
		w := &watched{r: r}
		err := write(ctx, key, w, size)
		switch {
		case err == nil:
		case w.err != nil && !errors.Is(err, w.err):
			return backoff.Permanent(fmt.Errorf("%s %s: %w (the store said: %w)", what, key, w.err, err))
		case w.callersFault(size):
			return backoff.Permanent(err)
		case errors.Is(err, blob.ErrExist) && mayHaveStored:
			if err := rewind(); err != nil {
				return err
			}
			same, cerr := s.holds(ctx, key, io.LimitReader(r, size))
			if cerr != nil {
				return fmt.Errorf("%s %s: compare with the object an earlier try may have stored: %w", what, key, cerr)
			}
			if same {
				return nil
			}
		case !final(ctx, err):
			mayHaveStored = true
		}
		return err
	})
}

// holds reports whether the object under key is exactly what r yields.
func (s *Store) holds(ctx context.Context, key string, r io.Reader) (bool, error) {
	rc, err := s.next.Get(ctx, key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	const n = 32 << 10
	a, b := make([]byte, n), make([]byte, n)
	for {
		na, erra := io.ReadFull(rc, a)
		nb, errb := io.ReadFull(r, b)
		if !bytes.Equal(a[:na], b[:nb]) {
			return false, nil
		}
		enda := erra == io.EOF || erra == io.ErrUnexpectedEOF
		endb := errb == io.EOF || errb == io.ErrUnexpectedEOF
		switch {
		case erra != nil && !enda:
			return false, erra
		case errb != nil && !endb:
			return false, errb
		case enda || endb:
			return enda && endb, nil
		}
	}
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
