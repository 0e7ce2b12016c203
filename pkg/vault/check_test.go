package vault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// checkFixture is a vault holding five streams of one chunk each, c[0] to
// c[4], and two manifests: m1 names c0, c1 and c2; m2 names c0, c3 and c3
// again. No manifest names c4.
type checkFixture struct {
	store blob.Store
	v     *vault.Vault
	c     []vault.ChunkRef
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	f := &checkFixture{store: newDirStore(t)}
	f.v = initVault(t, f.store)
	for i := range 5 {
		// 56 KiB, less than the smallest chunk: one chunk whatever the
		// vault's (random) key makes of the chunker
		res := write(t, f.v, sqlPages(uint64(40+i), 0, 7), vault.WriterOptions{})
		if len(res.Chunks) != 1 {
			t.Fatalf("stream %d has %d chunks; the test needs 1", i, len(res.Chunks))
		}
		f.c = append(f.c, res.Chunks[0])
	}
	f.putManifest(t, "m1", f.c[0], f.c[1], f.c[2])
	f.putManifest(t, "m2", f.c[0], f.c[3], f.c[3])
	return f
}

func (f *checkFixture) putManifest(t *testing.T, id string, chunks ...vault.ChunkRef) {
	t.Helper()
	m := &vault.Manifest{Chunks: chunks}
	for _, c := range chunks {
		m.Size += c.Size
	}
	if err := f.v.PutManifest(t.Context(), id, m); err != nil {
		t.Fatalf("PutManifest(%s): %v", id, err)
	}
}

// stored adds up the stored sizes of the fixture's chunks i.
func (f *checkFixture) stored(i ...int) int64 {
	var n int64
	for _, i := range i {
		n += f.c[i].StoredSize
	}
	return n
}

// tamper replaces the object under key with what change makes of it.
func (f *checkFixture) tamper(t *testing.T, key string, change func([]byte) []byte) {
	t.Helper()
	putRaw(t, f.store, key, change(getRaw(t, f.store, key)))
}

func flipMiddle(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }

// progressCall is one call of CheckOptions.OnProgress.
type progressCall struct{ done, total int }

// runCheck runs Check in mode, failing the test on an error, and checks
// that progress was reported once per chunk up to the total.
func runCheck(t *testing.T, v *vault.Vault, mode vault.CheckMode) *vault.CheckReport {
	t.Helper()
	var calls []progressCall
	r, err := v.Check(t.Context(), vault.CheckOptions{
		Mode:       mode,
		OnProgress: func(done, total int) { calls = append(calls, progressCall{done, total}) },
	})
	if err != nil {
		t.Fatalf("Check(%v): %v", mode, err)
	}
	if r.Chunks == 0 {
		if len(calls) != 0 {
			t.Errorf("progress %v with no chunks to check", calls)
		}
		return r
	}
	if len(calls) == 0 {
		t.Fatalf("Check(%v) reported no progress", mode)
	}
	for i, c := range calls {
		if c.total != r.Chunks || c.done < 1 || c.done > c.total || (i > 0 && c.done <= calls[i-1].done) {
			t.Errorf("progress calls %v; want done rising to total %d", calls, r.Chunks)
			break
		}
	}
	if last := calls[len(calls)-1]; last.done != r.Chunks {
		t.Errorf("last progress call %v; want done = total = %d", last, r.Chunks)
	}
	return r
}

// wantReport compares a report with what it should be, and checks that
// OK and Affected agree with want.Damaged.
func wantReport(t *testing.T, got *vault.CheckReport, want vault.CheckReport, wantAffected []string) {
	t.Helper()
	if got.Mode != want.Mode || got.Manifests != want.Manifests || got.Chunks != want.Chunks ||
		got.BytesRead != want.BytesRead || got.Unreferenced != want.Unreferenced {
		t.Errorf("report (%v): %d manifests, %d chunks, %d bytes read, %d unreferenced; want %d, %d, %d, %d",
			got.Mode, got.Manifests, got.Chunks, got.BytesRead, got.Unreferenced,
			want.Manifests, want.Chunks, want.BytesRead, want.Unreferenced)
	}
	if !reflect.DeepEqual(got.Damaged, want.Damaged) {
		t.Errorf("Damaged (%v) =\n%s\nwant\n%s", got.Mode, formatDamage(got.Damaged), formatDamage(want.Damaged))
	}
	if ok := len(want.Damaged) == 0; got.OK() != ok {
		t.Errorf("OK() = %v; want %v", got.OK(), ok)
	}
	if a := got.Affected(); !slices.Equal(a, wantAffected) {
		t.Errorf("Affected() = %q; want %q", a, wantAffected)
	}
}

func formatDamage(ds []vault.Damage) string {
	if len(ds) == 0 {
		return "\tnone"
	}
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "\tchunk %q manifest %q: %q, affects %q\n", d.Chunk, d.Manifest, d.Problem, d.Manifests)
	}
	return b.String()
}

// byChunk sorts damage as Check does, for damage to distinct chunks.
func byChunk(ds ...vault.Damage) []vault.Damage {
	slices.SortFunc(ds, func(a, b vault.Damage) int { return strings.Compare(a.Chunk, b.Chunk) })
	return ds
}

const authFailure = "fails authentication: altered, truncated, or stored under another name"

func TestCheckHealthy(t *testing.T) {
	f := newCheckFixture(t)
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 2, Chunks: 4, Unreferenced: 1,
	}, nil)
	// From a vault opened afresh, as a checking tool would.
	wantReport(t, runCheck(t, openVault(t, f.store), vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 2, Chunks: 4, BytesRead: f.stored(0, 1, 2, 3), Unreferenced: 1,
	}, nil)
}

func TestCheckEmptyVault(t *testing.T) {
	v := initVault(t, newDirStore(t))
	for _, mode := range []vault.CheckMode{vault.CheckFast, vault.CheckFull} {
		wantReport(t, runCheck(t, v, mode), vault.CheckReport{Mode: mode}, nil)
	}
}

func TestCheckMissingChunk(t *testing.T) {
	f := newCheckFixture(t)
	if err := f.store.Delete(t.Context(), chunkKey(f.c[0].ID)); err != nil {
		t.Fatal(err)
	}
	damage := []vault.Damage{{Chunk: f.c[0].ID, Problem: "missing", Manifests: []string{"m1", "m2"}}}
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 2, Chunks: 4, Unreferenced: 1, Damaged: damage,
	}, []string{"m1", "m2"})
	wantReport(t, runCheck(t, f.v, vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 2, Chunks: 4, BytesRead: f.stored(1, 2, 3), Unreferenced: 1, Damaged: damage,
	}, []string{"m1", "m2"})
}

// TestCheckCorruptChunk flips a byte in c0, which both manifests need,
// and in c3, which m2 names twice: the sizes stay right, so only a full
// check sees it.
func TestCheckCorruptChunk(t *testing.T) {
	f := newCheckFixture(t)
	f.tamper(t, chunkKey(f.c[0].ID), flipMiddle)
	f.tamper(t, chunkKey(f.c[3].ID), flipMiddle)
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 2, Chunks: 4, Unreferenced: 1,
	}, nil)
	wantReport(t, runCheck(t, f.v, vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 2, Chunks: 4, BytesRead: f.stored(0, 1, 2, 3), Unreferenced: 1,
		Damaged: byChunk(
			vault.Damage{Chunk: f.c[0].ID, Problem: "corrupt: " + authFailure, Manifests: []string{"m1", "m2"}},
			vault.Damage{Chunk: f.c[3].ID, Problem: "corrupt: " + authFailure, Manifests: []string{"m2"}},
		),
	}, []string{"m1", "m2"})
}

// TestCheckTruncatedChunk cuts the last byte off c1, which only m1 names:
// the store's listing gives sizes, so a fast check sees it.
func TestCheckTruncatedChunk(t *testing.T) {
	f := newCheckFixture(t)
	id, size := f.c[1].ID, f.c[1].StoredSize
	// the chunk begins its object: a pack of its own, or its own object
	f.tamper(t, chunkKey(id), func(b []byte) []byte { return b[:size-1] })
	var listed int64 = -1
	f.store.List(t.Context(), chunkKey(id), func(i blob.Info) error { listed = i.Size; return nil })
	if listed != size-1 {
		t.Fatalf("store lists the truncated chunk as %d bytes; want %d", listed, size-1)
	}

	wrongSize := vault.Damage{
		Chunk:     id,
		Problem:   fmt.Sprintf("wrong size: stored object is %d bytes; the manifest expects %d", size-1, size),
		Manifests: []string{"m1"},
	}
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 2, Chunks: 4, Unreferenced: 1, Damaged: []vault.Damage{wrongSize},
	}, []string{"m1"})
	// A full check reads it too, and finds it fails authentication.
	wantReport(t, runCheck(t, f.v, vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 2, Chunks: 4, BytesRead: f.stored(0, 1, 2, 3) - 1, Unreferenced: 1,
		Damaged: []vault.Damage{
			{Chunk: id, Problem: "corrupt: " + authFailure, Manifests: []string{"m1"}},
			wrongSize,
		},
	}, []string{"m1"})
}

// TestCheckManifestsDisagree has manifests record other sizes for a chunk
// than the first manifest naming it did: the damage names only the
// manifests whose record is wrong.
func TestCheckManifestsDisagree(t *testing.T) {
	f := newCheckFixture(t)
	// m3 records no stored size for c1, so a truncated c1 is a wrong size
	// for m1 only, and corrupt for both.
	unknown := f.c[1]
	unknown.StoredSize = 0
	f.putManifest(t, "m3", unknown)
	// m4 records one byte too many of plaintext for c2, which only
	// reading c2 can tell.
	tooBig := f.c[2]
	tooBig.Size++
	f.putManifest(t, "m4", tooBig)
	id1, size1 := f.c[1].ID, f.c[1].StoredSize
	f.tamper(t, chunkKey(id1), func(b []byte) []byte { return b[:size1-1] })

	wrongStored := vault.Damage{
		Chunk:     id1,
		Problem:   fmt.Sprintf("wrong size: stored object is %d bytes; the manifest expects %d", size1-1, size1),
		Manifests: []string{"m1"},
	}
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 4, Chunks: 4, Unreferenced: 1, Damaged: []vault.Damage{wrongStored},
	}, []string{"m1"})

	full := []vault.Damage{
		{Chunk: id1, Problem: "corrupt: " + authFailure, Manifests: []string{"m1", "m3"}},
		wrongStored,
		{
			Chunk:     f.c[2].ID,
			Problem:   fmt.Sprintf("wrong size: holds %d bytes of data; the manifest expects %d", f.c[2].Size, f.c[2].Size+1),
			Manifests: []string{"m4"},
		},
	}
	slices.SortStableFunc(full, func(a, b vault.Damage) int { return strings.Compare(a.Chunk, b.Chunk) })
	wantReport(t, runCheck(t, f.v, vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 4, Chunks: 4, BytesRead: f.stored(0, 1, 2, 3) - 1, Unreferenced: 1,
		Damaged: full,
	}, []string{"m1", "m3", "m4"})
}

// TestCheckTamperedManifest flips a byte in m2: its chunks are no longer
// known to be needed, and c3 counts as unreferenced.
func TestCheckTamperedManifest(t *testing.T) {
	f := newCheckFixture(t)
	f.tamper(t, "manifests/m2", flipMiddle)
	damage := []vault.Damage{{Manifest: "m2", Problem: "manifest unreadable: " + authFailure, Manifests: []string{"m2"}}}
	wantReport(t, runCheck(t, f.v, vault.CheckFast), vault.CheckReport{
		Mode: vault.CheckFast, Manifests: 2, Chunks: 3, Unreferenced: 2, Damaged: damage,
	}, []string{"m2"})
	wantReport(t, runCheck(t, f.v, vault.CheckFull), vault.CheckReport{
		Mode: vault.CheckFull, Manifests: 2, Chunks: 3, BytesRead: f.stored(0, 1, 2), Unreferenced: 2, Damaged: damage,
	}, []string{"m2"})
}

// TestCheckUnreferenced deletes m2, leaving c3 unreferenced beside c4, and
// writes a stream of one chunk without committing it.
func TestCheckUnreferenced(t *testing.T) {
	f := newCheckFixture(t)
	if err := f.v.DeleteManifest(t.Context(), "m2"); err != nil {
		t.Fatal(err)
	}
	// 56 KiB, one chunk whatever the vault's key (16 pages were one or
	// two chunks, by the key)
	if res := write(t, f.v, sqlPages(50, 0, 7), vault.WriterOptions{}); len(res.Chunks) != 1 {
		t.Fatalf("the uncommitted stream has %d chunks; the test needs 1", len(res.Chunks))
	}
	putRaw(t, f.store, "chunks/zz/not-a-chunk", []byte("x")) // not counted
	for _, mode := range []vault.CheckMode{vault.CheckFast, vault.CheckFull} {
		want := vault.CheckReport{Mode: mode, Manifests: 1, Chunks: 3, Unreferenced: 3}
		if mode == vault.CheckFull {
			want.BytesRead = f.stored(0, 1, 2)
		}
		wantReport(t, runCheck(t, f.v, mode), want, nil)
	}
}

// checkStore wraps a store to fail listings or chunk reads, and to make
// the first chunk reads wait for one another.
type checkStore struct {
	blob.Store
	failList bool // List fails
	failGet  bool // chunk Gets fail
	// gate, if not nil, holds each chunk Get until gateAt Gets are open
	// at once, or 10 seconds pass.
	gate     chan struct{}
	gateAt   int64
	gateOnce sync.Once
	open     atomic.Int64 // chunk objects open
	maxOpen  atomic.Int64
}

func (s *checkStore) List(ctx context.Context, prefix string, fn func(blob.Info) error) error {
	if s.failList {
		return errInjected
	}
	return s.Store.List(ctx, prefix, fn)
}

func (s *checkStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.open1(ctx, key, func() (io.ReadCloser, error) { return s.Store.Get(ctx, key) })
}

func (s *checkStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	return s.open1(ctx, key, func() (io.ReadCloser, error) { return s.Store.GetRange(ctx, key, off, length) })
}

// open1 opens a chunk with get, as the store's settings say.
func (s *checkStore) open1(ctx context.Context, key string, get func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	if !isChunkData(key) {
		return get()
	}
	if s.failGet {
		return nil, errInjected
	}
	n := s.open.Add(1)
	for {
		m := s.maxOpen.Load()
		if n <= m || s.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	if s.gate != nil {
		if n >= s.gateAt {
			s.gateOnce.Do(func() { close(s.gate) })
		}
		select {
		case <-s.gate:
		case <-time.After(10 * time.Second):
		}
	}
	rc, err := get()
	if err != nil {
		s.open.Add(-1)
		return nil, err
	}
	return &countedReader{ReadCloser: rc, open: &s.open}, nil
}

type countedReader struct {
	io.ReadCloser
	open *atomic.Int64
	once sync.Once
}

func (r *countedReader) Close() error {
	r.once.Do(func() { r.open.Add(-1) })
	return r.ReadCloser.Close()
}

// TestCheckWorkers checks that a full check reads Workers chunks at once,
// and no more.
func TestCheckWorkers(t *testing.T) {
	f := newCheckFixture(t)
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			checkGoroutines(t)
			s := &checkStore{Store: f.store, gate: make(chan struct{}), gateAt: int64(workers)}
			v := openVault(t, s)
			r, err := v.Check(t.Context(), vault.CheckOptions{Mode: vault.CheckFull, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK() || r.Chunks != 4 {
				t.Errorf("report: OK %v, %d chunks; want OK, 4", r.OK(), r.Chunks)
			}
			if got := s.maxOpen.Load(); got != int64(workers) {
				t.Errorf("at most %d chunks read at once; want %d", got, workers)
			}
		})
	}
}

// TestCheckErrors checks that a check that cannot run returns an error,
// not a report of damage.
func TestCheckErrors(t *testing.T) {
	f := newCheckFixture(t)
	modes := []vault.CheckMode{vault.CheckFast, vault.CheckFull}
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, mode := range modes {
			r, err := f.v.Check(ctx, vault.CheckOptions{Mode: mode})
			if !errors.Is(err, context.Canceled) || r != nil {
				t.Errorf("Check(%v) with a cancelled context = %v, %v; want nil, context.Canceled", mode, r, err)
			}
		}
	})
	t.Run("cancelled during", func(t *testing.T) {
		for _, mode := range modes {
			checkGoroutines(t)
			ctx, cancel := context.WithCancel(t.Context())
			calls := 0
			r, err := f.v.Check(ctx, vault.CheckOptions{Mode: mode, Workers: 1, OnProgress: func(done, total int) {
				calls++
				cancel()
			}})
			cancel()
			if !errors.Is(err, context.Canceled) || r != nil {
				t.Errorf("Check(%v) cancelled while running = %v, %v; want nil, context.Canceled", mode, r, err)
			}
			if calls != 1 {
				t.Errorf("Check(%v) went on after cancellation: %d progress calls", mode, calls)
			}
		}
	})
	t.Run("store fails to list", func(t *testing.T) {
		s := &checkStore{Store: f.store}
		v := openVault(t, s) // Open lists the keys
		s.failList = true
		for _, mode := range modes {
			if r, err := v.Check(t.Context(), vault.CheckOptions{Mode: mode}); !errors.Is(err, errInjected) || r != nil {
				t.Errorf("Check(%v) with a failing List = %v, %v; want nil, the store's error", mode, r, err)
			}
		}
	})
	t.Run("store fails to read chunks", func(t *testing.T) {
		checkGoroutines(t)
		v := openVault(t, &checkStore{Store: f.store, failGet: true})
		r, err := v.Check(t.Context(), vault.CheckOptions{Mode: vault.CheckFull})
		if !errors.Is(err, errInjected) || r != nil {
			t.Errorf("full Check with failing reads = %v, %v; want nil, the store's error", r, err)
		}
		// A fast check reads no chunk.
		if r, err := v.Check(t.Context(), vault.CheckOptions{Mode: vault.CheckFast}); err != nil || !r.OK() {
			t.Errorf("fast Check with failing reads = %+v, %v; want OK", r, err)
		}
	})
	t.Run("unknown mode", func(t *testing.T) {
		if _, err := f.v.Check(t.Context(), vault.CheckOptions{Mode: 7}); err == nil {
			t.Errorf("Check with mode 7 succeeded")
		}
	})
}
