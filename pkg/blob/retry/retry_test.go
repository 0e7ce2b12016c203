package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/blobtest"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/blob/retry"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
)

// fast retries quickly, for tests.
var fast = retry.Config{First: time.Millisecond, Max: 5 * time.Millisecond, For: 10 * time.Second}

func newDir(t *testing.T) blob.Store {
	t.Helper()
	s, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wrap(t *testing.T, next blob.Store, cfg retry.Config) *retry.Store {
	t.Helper()
	s, err := retry.New(next, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// errOutage is the failure of a store that is down.
var errOutage = errors.New("connection refused")

// flaky fails every call twice before it lets one through, and breaks off
// a listing after its second key the first time: a store that keeps
// dropping its connections.
type flaky struct {
	blob.Store
	mu     sync.Mutex
	calls  map[string]int // by operation and key
	failed int
}

func (f *flaky) fail(op, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op+" "+key]++
	if f.calls[op+" "+key]%3 != 0 {
		f.failed++
		return fmt.Errorf("%s %s: %w", op, key, errOutage)
	}
	return nil
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.fail("put", key); err != nil {
		// a failure part-way: some of the data was read; a store reports
		// its source's own failure rather than its own
		if _, rerr := io.CopyN(io.Discard, r, size/2+1); rerr != nil && rerr != io.EOF {
			return fmt.Errorf("put %s: read the data: %w", key, rerr)
		}
		return err
	}
	return f.Store.Put(ctx, key, r, size)
}

// Create loses its answer on the first of every three calls (the object
// is stored, the caller told of a failure) and fails on the second.
func (f *flaky) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	f.mu.Lock()
	lost := f.calls["create "+key]%3 == 0
	f.mu.Unlock()
	if err := f.fail("create", key); err != nil {
		if lost {
			if cerr := blob.Create(ctx, f.Store, key, r, size); cerr != nil {
				return cerr
			}
		}
		return err
	}
	return blob.Create(ctx, f.Store, key, r, size)
}

func (f *flaky) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.fail("get", key); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, key)
}

func (f *flaky) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off >= 0 && length >= 0 {
		if err := f.fail("range", key); err != nil {
			return nil, err
		}
	}
	return f.Store.GetRange(ctx, key, off, length)
}

func (f *flaky) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := f.fail("stat", key); err != nil {
		return blob.Info{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.fail("delete", key); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if err := f.fail("list", prefix); err != nil {
		// break off after two keys
		n := 0
		lerr := f.Store.List(ctx, prefix, func(info blob.Info) error {
			if n == 2 {
				return errOutage
			}
			n++
			return fn(info)
		})
		if errors.Is(lerr, errOutage) || lerr == nil {
			return err
		}
		return lerr
	}
	return f.Store.List(ctx, prefix, fn)
}

// TestConformance: the wrapped store passes the suite the stores pass,
// around a directory and around a store that fails two calls in three,
// and it did have failures to mend.
func TestConformance(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return wrap(t, newDir(t), fast) })
	})
	var mu sync.Mutex
	failed := 0
	t.Run("flaky", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store {
			f := &flaky{Store: newDir(t)}
			t.Cleanup(func() { mu.Lock(); failed += f.failed; mu.Unlock() })
			return wrap(t, f, fast)
		})
	})
	if failed == 0 {
		t.Error("the flaky store never failed: the suite proved nothing about retries")
	}
	t.Logf("failures tried again: %d", failed)
}

// down always fails.
type down struct{ blob.Store }

func (down) Put(context.Context, string, io.Reader, int64) error { return errOutage }
func (down) Stat(context.Context, string) (blob.Info, error)     { return blob.Info{}, errOutage }

// TestGivesUp: a store down for longer than For fails the call with its
// last error, saying how long it tried; an answer (no such object) is
// not tried again; a reader that is not rewindable is tried once.
func TestGivesUp(t *testing.T) {
	s := wrap(t, down{newDir(t)}, retry.Config{First: time.Millisecond, Max: 2 * time.Millisecond, For: 50 * time.Millisecond})
	start := time.Now()
	err := s.Put(t.Context(), "a", bytes.NewReader([]byte("abc")), 3)
	if !errors.Is(err, errOutage) || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("Put to a store that is down: %v; want the outage, and how long it tried", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("gave up after %v; want about For (50ms)", d)
	}
	f := &flaky{Store: newDir(t)}
	s = wrap(t, f, fast)
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("Stat of a missing object: %v", err)
	}
	if f.calls["stat missing"] != 3 {
		t.Errorf("Stat of a missing object took %d calls; want 3 (two failures, then the answer)", f.calls["stat missing"])
	}
	// a reader that cannot be rewound: the first failure is the answer
	err = s.Put(t.Context(), "once", io.LimitReader(strings.NewReader("abcdef"), 6), 6)
	if !errors.Is(err, errOutage) || f.calls["put once"] != 1 {
		t.Errorf("Put of a reader that cannot be rewound: %v after %d calls; want the failure after one", err, f.calls["put once"])
	}
	// the caller's own context ends the tries
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	s = wrap(t, down{newDir(t)}, retry.Config{First: time.Millisecond, Max: 2 * time.Millisecond, For: time.Hour})
	if err := s.Put(ctx, "a", bytes.NewReader([]byte("abc")), 3); err == nil {
		t.Error("Put past the caller's deadline: no error")
	}
}

// TestMinIOOutage: a 4 MiB upload into MinIO while MinIO is killed and
// started again three seconds later completes, and the object is whole.
func TestMinIOOutage(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "vault")
	s3, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "vault", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	s := wrap(t, s3, retry.Config{First: 100 * time.Millisecond, Max: time.Second, For: time.Minute})
	data := bytes.Repeat([]byte("coffer!\n"), 512<<10)
	srv.Kill()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(3 * time.Second) // the outage's length, not a condition
		srv.Restart(t)
	}()
	err = s.Put(t.Context(), "packs/p1", bytes.NewReader(data), int64(len(data)))
	<-restarted
	if err != nil {
		t.Fatalf("Put across a three-second outage: %v", err)
	}
	rc, err := s.Get(t.Context(), "packs/p1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (err %v); want the %d put", len(got), err, len(data))
	}
}

// TestCreateAfterLostAnswer: a Create whose object was stored by a try
// that seemed to fail succeeds; one that finds another's object after a
// failed try, or finds the key taken at its first try even by the same
// bytes, fails with ErrExist and leaves that object.
func TestCreateAfterLostAnswer(t *testing.T) {
	ctx := t.Context()
	f := &flaky{Store: newDir(t)}
	s := wrap(t, f, fast)
	data := []byte("a key record, with its random nonce")
	if err := s.Create(ctx, "keys/a", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Create whose first answer was lost: %v", err)
	}
	// stored but lost, failed, found its own object but failed to read
	// it (flaky's Get), and so on
	if n := f.calls["create keys/a"]; n < 3 {
		t.Errorf("Create took %d calls; want at least 3", n)
	}
	if got := readAll(t, f.Store, "keys/a"); !bytes.Equal(got, data) {
		t.Errorf("keys/a holds %q; want %q", got, data)
	}

	// another writer's object appears while the first try's answer is lost
	other := &otherFirst{Store: newDir(t)}
	s = wrap(t, other, fast)
	if err := s.Create(ctx, "keys/b", bytes.NewReader(data), int64(len(data))); !errors.Is(err, blob.ErrExist) {
		t.Errorf("Create that finds another's object after a failure: %v; want blob.ErrExist", err)
	}
	if got := readAll(t, other.Store, "keys/b"); string(got) != "theirs" {
		t.Errorf("keys/b holds %q; want the other writer's", got)
	}

	// the same bytes already there at the first try: not this Create's
	s = wrap(t, newDir(t), fast)
	if err := s.Create(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "k", bytes.NewReader(data), int64(len(data))); !errors.Is(err, blob.ErrExist) {
		t.Errorf("Create of a key taken, same bytes, first try: %v; want blob.ErrExist", err)
	}
}

// otherFirst fails its first Create of each key, storing another
// writer's object there instead.
type otherFirst struct {
	blob.Store
	mu   sync.Mutex
	seen map[string]bool
}

func (o *otherFirst) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	o.mu.Lock()
	first := !o.seen[key]
	if o.seen == nil {
		o.seen = map[string]bool{}
	}
	o.seen[key] = true
	o.mu.Unlock()
	if first {
		if err := o.Store.Put(ctx, key, strings.NewReader("theirs"), 6); err != nil {
			return err
		}
		return errOutage
	}
	return blob.Create(ctx, o.Store, key, r, size)
}

func readAll(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
