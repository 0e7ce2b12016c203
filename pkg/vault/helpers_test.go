package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
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
// write stores data as one stream and returns its Result. Unless opts say
// otherwise, every chunk goes in a pack of its own, so that a test can
// damage one chunk (chunkKey names the object that holds it).
func write(t *testing.T, v *vault.Vault, data []byte, opts vault.WriterOptions) vault.Result {
	t.Helper()
	if opts.PackSize == 0 {
		opts.PackSize = 1
	}
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
	res := w.Result()
	located.Lock()
	defer located.Unlock()
	for _, c := range res.Chunks {
		if loc, ok := v.Locate(c.ID); ok {
			located.m[c.ID] = loc.Key
		}
	}
	return res
}

// located remembers where write stored each chunk, for chunkKey.
var located = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// read reads a stream back, returning what it got before any error.
func read(t *testing.T, v *vault.Vault, chunks []vault.ChunkRef) ([]byte, error) {
	t.Helper()
	r := v.NewReader(t.Context(), chunks)
	defer r.Close()
	var buf bytes.Buffer
	_, err := io.Copy(&buf, r)
	return buf.Bytes(), err
}

// chunkKey names the object that holds chunk id: its pack of its own, as
// write stored it last, or its own object in a format 1 vault.
func chunkKey(id string) string {
	located.Lock()
	defer located.Unlock()
	if key, ok := located.m[id]; ok {
		return key
	}
	return "chunks/" + id[:2] + "/" + id
}

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

// getChunk returns the sealed bytes of chunk id, where v stored them.
func getChunk(t *testing.T, v *vault.Vault, s blob.Store, id string) []byte {
	t.Helper()
	loc, ok := v.Locate(id)
	if !ok {
		t.Fatalf("chunk %s is not in the vault", id)
	}
	raw := getRaw(t, s, loc.Key)
	return raw[loc.Offset : loc.Offset+loc.Length]
}

// putChunk replaces the sealed bytes of chunk id, where v stored them,
// with b, of any length: what follows in the object moves with it.
func putChunk(t *testing.T, v *vault.Vault, s blob.Store, id string, b []byte) {
	t.Helper()
	loc, ok := v.Locate(id)
	if !ok {
		t.Fatalf("chunk %s is not in the vault", id)
	}
	raw := getRaw(t, s, loc.Key)
	out := append(append(slices.Clone(raw[:loc.Offset]), b...), raw[loc.Offset+loc.Length:]...)
	putRaw(t, s, loc.Key, out)
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

// isChunkData reports whether key holds chunks: a pack, or a chunk of its
// own (format 1).
func isChunkData(key string) bool {
	return strings.HasPrefix(key, "packs/") || strings.HasPrefix(key, "chunks/")
}

// errInjected is the failure faultStore injects.
var errInjected = errors.New("injected store failure")

// faultStore wraps a store to fail or stall uploads of chunks (packs).
type faultStore struct {
	blob.Store
	failPutsAfter int64 // chunk Puts that succeed before the rest fail; <0 never fail
	failStat      bool  // chunk Stats fail
	failIndex     bool  // index Puts fail
	stallPuts     bool  // chunk Puts block until their context ends
	puts          atomic.Int64
	stalled       chan struct{} // receives once per stalled Put, if not nil
}

func (f *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.failIndex && strings.HasPrefix(key, "index/") {
		return errInjected
	}
	if !isChunkData(key) {
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
	if f.failStat && isChunkData(key) {
		return blob.Info{}, errInjected
	}
	return f.Store.Stat(ctx, key)
}
