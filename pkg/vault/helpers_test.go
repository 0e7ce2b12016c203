package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/vault"
)

// testMaster is the master key of the tests' vaults.
var testMaster = bytes.Repeat([]byte{0x42}, vault.MasterKeySize)

// newStoreFunc returns a new, empty store for one test.
type newStoreFunc func(t *testing.T) blob.Store

func newDirStore(t *testing.T) blob.Store {
	t.Helper()
	s, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forEachBackend runs fn as a subtest per real backend: a directory, and
// a MinIO server (skipped, outside CI, when there is no minio binary).
func forEachBackend(t *testing.T, fn func(t *testing.T, newStore newStoreFunc)) {
	t.Run("dirstore", func(t *testing.T) { fn(t, newDirStore) })
	t.Run("s3store", func(t *testing.T) {
		srv := miniotest.Start(t)
		var n atomic.Int64
		fn(t, func(t *testing.T) blob.Store {
			t.Helper()
			bucket := fmt.Sprintf("vault-%d", n.Add(1))
			srv.MakeBucket(t, bucket)
			s, err := s3store.New(s3store.Config{
				Endpoint:  srv.Endpoint,
				Bucket:    bucket,
				Prefix:    "coffer",
				AccessKey: srv.AccessKey,
				SecretKey: srv.SecretKey,
				RootCAs:   srv.CertPool(),
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func initVault(t *testing.T, store blob.Store) *vault.Vault {
	t.Helper()
	v, err := vault.Init(t.Context(), store, testMaster)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return v
}

func openVault(t *testing.T, store blob.Store) *vault.Vault {
	t.Helper()
	v, err := vault.Open(t.Context(), store, testMaster)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return v
}

// write stores data as one stream, in writes of 1 MiB.
func write(t *testing.T, v *vault.Vault, data []byte, opts vault.WriterOptions) vault.Result {
	t.Helper()
	w := v.NewWriter(t.Context(), opts)
	for p := data; len(p) > 0; {
		n := min(len(p), 1<<20)
		if _, err := w.Write(p[:n]); err != nil {
			w.Close()
			t.Fatalf("Write: %v", err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return w.Result()
}

// read reads a stream back, returning what it got before any error.
func read(t *testing.T, v *vault.Vault, chunks []vault.ChunkRef) ([]byte, error) {
	t.Helper()
	r := v.NewReader(t.Context(), chunks)
	defer r.Close()
	var buf bytes.Buffer
	_, err := io.Copy(&buf, r)
	return buf.Bytes(), err
}

func chunkKey(id string) string { return "chunks/" + id[:2] + "/" + id }

func getRaw(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func putRaw(t *testing.T, s blob.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// offsetOf returns where chunk i starts in its stream.
func offsetOf(chunks []vault.ChunkRef, i int) int {
	off := 0
	for _, c := range chunks[:i] {
		off += int(c.Size)
	}
	return off
}

// wantChunkError checks that err reports chunk id, matching target.
func wantChunkError(t *testing.T, err error, id string, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error = %v; want it to match %v", err, target)
	}
	var ce *vault.ChunkError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v; want a *vault.ChunkError", err)
	}
	if ce.ID != id {
		t.Errorf("ChunkError.ID = %s; want %s", ce.ID, id)
	}
	if !strings.Contains(err.Error(), id) {
		t.Errorf("error %q does not name chunk %s", err, id)
	}
}

// checkGoroutines fails the test if, when it ends, more goroutines run than
// when checkGoroutines was called. Goroutines take a moment to exit after
// what stopped them returns, so it polls.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines left running; %d before:\n%s", runtime.NumGoroutine(), before, buf)
				return
			}
			<-tick.C
		}
	})
}

// errInjected is the failure faultStore injects.
var errInjected = errors.New("injected store failure")

// faultStore wraps a store to fail or stall chunk uploads.
type faultStore struct {
	blob.Store
	failPutsAfter int64 // chunk Puts that succeed before the rest fail; <0 never fail
	failStat      bool  // chunk Stats fail
	stallPuts     bool  // chunk Puts block until their context ends
	puts          atomic.Int64
	stalled       chan struct{} // receives once per stalled Put, if not nil
}

func (f *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !strings.HasPrefix(key, "chunks/") {
		return f.Store.Put(ctx, key, r, size)
	}
	if f.stallPuts {
		if f.stalled != nil {
			f.stalled <- struct{}{}
		}
		<-ctx.Done()
		return ctx.Err()
	}
	if n := f.puts.Add(1); f.failPutsAfter >= 0 && n > f.failPutsAfter {
		return errInjected
	}
	return f.Store.Put(ctx, key, r, size)
}

func (f *faultStore) Stat(ctx context.Context, key string) (blob.Info, error) {
	if f.failStat && strings.HasPrefix(key, "chunks/") {
		return blob.Info{}, errInjected
	}
	return f.Store.Stat(ctx, key)
}
