package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// readerAtFixture is a stream of several chunks in a vault on a directory.
type readerAtFixture struct {
	store blob.Store
	v     *vault.Vault
	data  []byte
	refs  []vault.ChunkRef
	// packed: chunks share packs, and may be read several at a time
	packed bool
}

func newReaderAtFixture(t *testing.T) *readerAtFixture {
	t.Helper()
	return newPackedFixture(t, 1)
}

// newPackedFixture is newReaderAtFixture with packs of packSize bytes
// (1: a chunk per pack).
func newPackedFixture(t *testing.T, packSize int) *readerAtFixture {
	t.Helper()
	store := &countStore{Store: newDirStore(t)}
	v := initVault(t, store)
	data := sqlPages(31, 0, 12<<20/8192)
	res := write(t, v, data, vault.WriterOptions{PackSize: packSize})
	if len(res.Chunks) < 6 {
		t.Fatalf("only %d chunks; the tests need 6", len(res.Chunks))
	}
	return &readerAtFixture{store: store, v: v, data: data, refs: res.Chunks, packed: packSize > 1}
}

func (f *readerAtFixture) open(t *testing.T, opt vault.ReaderAtOptions) *vault.ReaderAt {
	t.Helper()
	r := f.v.NewReaderAt(t.Context(), f.refs, opt)
	t.Cleanup(func() { r.Close() })
	return r
}

// checkReadAt reads len(want) bytes at off, or to the end of the stream,
// and checks them, with io.EOF when the read goes past the end.
func checkReadAt(t *testing.T, r io.ReaderAt, data []byte, off int64, n int) {
	t.Helper()
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	want := data[min(off, int64(len(data))):min(off+int64(n), int64(len(data)))]
	if got != len(want) {
		t.Errorf("ReadAt(%d bytes at %d) = %d bytes; want %d", n, off, got, len(want))
	}
	if !bytes.Equal(buf[:got], want[:min(got, len(want))]) {
		t.Errorf("ReadAt(%d bytes at %d): data differs", n, off)
	}
	switch {
	case len(want) < n && err != io.EOF:
		t.Errorf("ReadAt(%d bytes at %d) past the end: error %v; want io.EOF", n, off, err)
	case len(want) == n && err != nil:
		t.Errorf("ReadAt(%d bytes at %d): %v", n, off, err)
	}
}

func TestReaderAt(t *testing.T) {
	t.Run("a chunk per pack", func(t *testing.T) { testReaderAt(t, newPackedFixture(t, 1)) })
	// chunks next to each other in a pack are read with one GET
	t.Run("packed", func(t *testing.T) { testReaderAt(t, newPackedFixture(t, 4<<20)) })
}

func testReaderAt(t *testing.T, f *readerAtFixture) {
	size := int64(len(f.data))

	t.Run("size", func(t *testing.T) {
		r := f.open(t, vault.ReaderAtOptions{})
		if got := r.Size(); got != size {
			t.Errorf("Size = %d; want %d", got, size)
		}
	})
	t.Run("random ranges", func(t *testing.T) {
		for _, opt := range []vault.ReaderAtOptions{
			{},
			{CacheChunks: 1, ReadAhead: -1},
			{CacheChunks: 2, ReadAhead: 8},
			{Forward: true},
			{Forward: true, CacheChunks: 1, ReadAhead: -1},
		} {
			r := f.open(t, opt)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 100 {
				off := rng.Int64N(size)
				checkReadAt(t, r, f.data, off, rng.IntN(3<<20)+1)
			}
		}
	})
	t.Run("chunk boundaries", func(t *testing.T) {
		r := f.open(t, vault.ReaderAtOptions{})
		for i := 1; i < len(f.refs); i++ {
			b := int64(offsetOf(f.refs, i))
			checkReadAt(t, r, f.data, b-10, 20)
			checkReadAt(t, r, f.data, b, 1)
			checkReadAt(t, r, f.data, b-1, 1)
		}
		// From inside the first chunk to inside the fourth.
		start := int64(offsetOf(f.refs, 1)) - 100
		end := int64(offsetOf(f.refs, 3)) + 100
		checkReadAt(t, r, f.data, start, int(end-start))
		// The whole stream in one read.
		checkReadAt(t, r, f.data, 0, len(f.data))
	})
	t.Run("trim", func(t *testing.T) {
		// reads after Trim load again what it let go of
		store := &countStore{Store: f.store}
		v := openVault(t, store)
		// no read-ahead, whose loads could come after a read returns
		r := v.NewReaderAt(t.Context(), f.refs, vault.ReaderAtOptions{CacheChunks: len(f.refs), ReadAhead: -1})
		defer r.Close()
		checkReadAt(t, r, f.data, 0, 1<<20)
		before := store.gets.Load()
		checkReadAt(t, r, f.data, 0, 1<<20)
		if store.gets.Load() != before {
			t.Fatal("reading cached chunks again fetched them")
		}
		r.Trim()
		checkReadAt(t, r, f.data, 0, len(f.data))
		if store.gets.Load() == before {
			t.Error("after Trim, reads fetched nothing: the cache was kept")
		}
	})
	t.Run("end", func(t *testing.T) {
		r := f.open(t, vault.ReaderAtOptions{})
		checkReadAt(t, r, f.data, size-5, 10)
		checkReadAt(t, r, f.data, size-10, 10)
		for _, off := range []int64{size, size + 1, size + 1<<30} {
			n, err := r.ReadAt(make([]byte, 10), off)
			if n != 0 || err != io.EOF {
				t.Errorf("ReadAt at %d, size %d = %d, %v; want 0, io.EOF", off, size, n, err)
			}
		}
		if n, err := r.ReadAt(make([]byte, 10), -1); n != 0 || err == nil {
			t.Errorf("ReadAt at -1 = %d, %v; want an error", n, err)
		}
		if n, err := r.ReadAt(nil, 0); n != 0 || err != nil {
			t.Errorf("ReadAt of nothing = %d, %v; want 0, nil", n, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		for _, opt := range []vault.ReaderAtOptions{{}, {CacheChunks: 2}, {Forward: true}} {
			r := f.open(t, opt)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					for range 30 {
						off := rng.Int64N(size)
						checkReadAt(t, r, f.data, off, rng.IntN(2<<20)+1)
					}
				})
			}
			wg.Wait()
		}
	})
	t.Run("shared loads", func(t *testing.T) {
		// Eight readers of the whole stream at once, with room for every
		// chunk: each chunk is fetched once, by one read or the
		// read-ahead, however many wait for it (several at a time when
		// they share packs).
		store := &countStore{Store: f.store}
		v := openVault(t, store)
		r := v.NewReaderAt(t.Context(), f.refs, vault.ReaderAtOptions{CacheChunks: len(f.refs)})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { checkReadAt(t, r, f.data, 0, len(f.data)) })
		}
		wg.Wait()
		r.Close() // waits for the read-ahead, whose fetches count too
		if got := store.gets.Load(); got > int64(len(f.refs)) || !f.packed && got != int64(len(f.refs)) {
			t.Errorf("%d chunk fetches for %d chunks; want one each", got, len(f.refs))
		}
	})
	t.Run("section reader", func(t *testing.T) {
		for _, opt := range []vault.ReaderAtOptions{{}, {Forward: true}} {
			r := f.open(t, opt)
			var buf bytes.Buffer
			if _, err := io.Copy(&buf, io.NewSectionReader(r, 0, r.Size())); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), f.data) {
				t.Errorf("sequential read through a SectionReader, %+v: differs", opt)
			}
		}
	})
	t.Run("repeated chunks", func(t *testing.T) {
		// The same chunks twice over: one cache entry serves both places.
		refs := append(slices.Clone(f.refs), f.refs...)
		data := append(slices.Clone(f.data), f.data...)
		r := f.v.NewReaderAt(t.Context(), refs, vault.ReaderAtOptions{CacheChunks: 3})
		defer r.Close()
		rng := rand.New(rand.NewPCG(3, 4))
		for range 50 {
			checkReadAt(t, r, data, rng.Int64N(int64(len(data))), rng.IntN(1<<20)+1)
		}
	})
	t.Run("a chunk repeated in a row", func(t *testing.T) {
		// as a run of empty pages is: one group may list a chunk
		// several times
		refs := []vault.ChunkRef{f.refs[1], f.refs[1], f.refs[1], f.refs[2], f.refs[1], f.refs[3]}
		var data []byte
		for _, i := range []int{1, 1, 1, 2, 1, 3} {
			data = append(data, f.data[offsetOf(f.refs, i):offsetOf(f.refs, i+1)]...)
		}
		store := &countStore{Store: f.store}
		got, err := read(t, openVault(t, store), refs)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("sequential read: %v, or the bytes differ", err)
		}
		// at most a GET for 1, 1, 1 and one for each of 2, 1 and 3 (where
		// chunks 1 and 2 or 3 lie in different packs): the chunk repeated
		// in a row comes with one
		if n := store.gets.Load(); f.packed && n > 4 {
			t.Errorf("%d GETs for chunks 1, 1, 1, 2, 1, 3; want chunk 1 repeated in a row read once", n)
		}
		r := f.v.NewReaderAt(t.Context(), refs, vault.ReaderAtOptions{})
		defer r.Close()
		checkReadAt(t, r, data, 0, len(data))
	})
	t.Run("empty stream", func(t *testing.T) {
		r := f.v.NewReaderAt(t.Context(), nil, vault.ReaderAtOptions{})
		defer r.Close()
		if n, err := r.ReadAt(make([]byte, 1), 0); r.Size() != 0 || n != 0 || err != io.EOF {
			t.Errorf("empty stream: Size %d, ReadAt = %d, %v; want 0, 0, io.EOF", r.Size(), n, err)
		}
	})
}

func TestReaderAtDamage(t *testing.T) {
	f := newReaderAtFixture(t)
	const victim = 3
	id := f.refs[victim].ID
	start, end := int64(offsetOf(f.refs, victim)), int64(offsetOf(f.refs, victim+1))
	orig := getRaw(t, f.store, chunkKey(id))

	tests := []struct {
		name   string
		damage func(t *testing.T)
		target error
	}{
		{"corrupt", func(t *testing.T) { putRaw(t, f.store, chunkKey(id), flipMiddle(slices.Clone(orig))) }, vault.ErrCorrupt},
		{"missing", func(t *testing.T) {
			if err := f.store.Delete(t.Context(), chunkKey(id)); err != nil {
				t.Fatal(err)
			}
		}, blob.ErrNotExist},
	}
	for _, tt := range tests {
		for _, opt := range []vault.ReaderAtOptions{{}, {Forward: true}} {
			t.Run(fmt.Sprintf("%s forward=%v", tt.name, opt.Forward), func(t *testing.T) {
				tt.damage(t)
				defer putRaw(t, f.store, chunkKey(id), orig)
				r := f.open(t, opt)

				// A range from the chunk before into the damaged one returns
				// what precedes the damage, and the chunk's error.
				buf := make([]byte, 200)
				n, err := r.ReadAt(buf, start-100)
				wantChunkError(t, err, id, tt.target)
				if n != 100 || !bytes.Equal(buf[:n], f.data[start-100:start]) {
					t.Errorf("ReadAt across the damage = %d bytes; want the 100 before it", n)
				}
				// Twice: a failure is not cached as data.
				_, err = r.ReadAt(buf, end-50)
				wantChunkError(t, err, id, tt.target)
				if tt.target == vault.ErrCorrupt && !strings.Contains(err.Error(), "authentication") {
					t.Errorf("error %q does not say the chunk fails authentication", err)
				}
				// The rest of the stream reads.
				checkReadAt(t, r, f.data, 0, int(start))
				checkReadAt(t, r, f.data, end, len(f.data)-int(end))

				wantChunkError(t, f.v.VerifyStream(t.Context(), f.refs), id, tt.target)

				// Repaired, the chunk reads: the reader tries it again.
				putRaw(t, f.store, chunkKey(id), orig)
				checkReadAt(t, r, f.data, start-100, 200)
			})
		}
	}
	if err := f.v.VerifyStream(t.Context(), f.refs); err != nil {
		t.Errorf("VerifyStream of a whole stream: %v", err)
	}
	t.Run("wrong size in the list", func(t *testing.T) {
		// The same chunk listed twice, once with a size it does not have.
		refs := []vault.ChunkRef{f.refs[0], f.refs[0]}
		refs[1].Size--
		r := f.v.NewReaderAt(t.Context(), refs, vault.ReaderAtOptions{})
		defer r.Close()
		checkReadAt(t, r, f.data, 0, int(refs[0].Size))
		_, err := r.ReadAt(make([]byte, 10), refs[0].Size)
		wantChunkError(t, err, refs[0].ID, vault.ErrCorrupt)
	})
}

// stallStore makes every Get of a chunk other than free wait until its
// context ends, telling started when one begins.
type stallStore struct {
	blob.Store
	free    string
	started chan string
}

func (s *stallStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.stall(ctx, key); err != nil {
		return nil, err
	}
	return s.Store.Get(ctx, key)
}

func (s *stallStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := s.stall(ctx, key); err != nil {
		return nil, err
	}
	return s.Store.GetRange(ctx, key, off, length)
}

func (s *stallStore) stall(ctx context.Context, key string) error {
	if isChunkData(key) && key != s.free {
		s.started <- key
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// TestReaderAtStops checks that Close, or cancelling the reader's context,
// stops the loads in flight, read-ahead included, and that reads then fail.
func TestReaderAtStops(t *testing.T) {
	f := newReaderAtFixture(t)
	stall := func() (*vault.Vault, *stallStore) {
		s := &stallStore{Store: f.store, free: chunkKey(f.refs[0].ID), started: make(chan string, 100)}
		return openVault(t, s), s
	}

	t.Run("close", func(t *testing.T) {
		checkGoroutines(t)
		v, s := stall()
		r := v.NewReaderAt(t.Context(), f.refs, vault.ReaderAtOptions{})
		checkReadAt(t, r, f.data, 0, 100)
		// Reading chunk 0 starts read-ahead of the next ones, which stalls.
		<-s.started
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n, err := r.ReadAt(make([]byte, 10), 0); n != 0 || err == nil || err == io.EOF {
			t.Errorf("ReadAt after Close = %d, %v; want an error", n, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	for _, opt := range []vault.ReaderAtOptions{{ReadAhead: -1}, {ReadAhead: -1, Forward: true}} {
		t.Run(fmt.Sprintf("close during a read, forward=%v", opt.Forward), func(t *testing.T) {
			checkGoroutines(t)
			v, s := stall()
			r := v.NewReaderAt(t.Context(), f.refs, opt)
			errc := make(chan error, 1)
			go func() {
				_, err := r.ReadAt(make([]byte, 10), f.refs[0].Size)
				errc <- err
			}()
			<-s.started
			r.Close()
			if err := <-errc; err == nil || err == io.EOF {
				t.Errorf("ReadAt cut by Close = %v; want an error", err)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		checkGoroutines(t)
		v, s := stall()
		ctx, cancel := context.WithCancel(t.Context())
		r := v.NewReaderAt(ctx, f.refs, vault.ReaderAtOptions{})
		defer r.Close()
		errc := make(chan error, 1)
		go func() {
			_, err := r.ReadAt(make([]byte, 10), f.refs[0].Size+f.refs[1].Size)
			errc <- err
		}()
		<-s.started
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAt cut by cancel = %v; want context.Canceled", err)
		}
		if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAt after cancel = %v; want context.Canceled", err)
		}
	})
}

// TestReaderAtGroups reads a packed stream forward in ranges of 1 MiB, as
// a RESTORE FROM URL does (one range at a time here, so that the count
// does not depend on which range's read starts first): chunks that lie
// next to each other in a pack come in one ranged GET, so there are far
// fewer GETs than chunks, and the bytes are the stream's.
func TestReaderAtGroups(t *testing.T) {
	f := newPackedFixture(t, 4<<20)
	store := f.store.(*countStore)
	r := f.open(t, vault.ReaderAtOptions{CacheChunks: 64, ReadAhead: 16})
	before := store.gets.Load()
	const span, inFlight = 1 << 20, 1
	got := make([]byte, len(f.data))
	var wg sync.WaitGroup
	sem := make(chan struct{}, inFlight)
	for off := 0; off < len(got); off += span {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			end := min(off+span, len(got))
			if n, err := r.ReadAt(got[off:end], int64(off)); n != end-off || (err != nil && err != io.EOF) {
				t.Errorf("ReadAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
			}
		})
	}
	wg.Wait()
	if !bytes.Equal(got, f.data) {
		t.Fatal("the stream read back differs")
	}
	gets := store.gets.Load() - before
	t.Logf("%d chunks read with %d ranged GETs", len(f.refs), gets)
	if gets > int64(len(f.refs))/3 {
		t.Errorf("%d ranged GETs for %d chunks; want chunks next to each other read together", gets, len(f.refs))
	}
}

// TestReaderAtForward reads a packed stream as SQL Server's RESTORE FROM
// URL does, through sections as the URL endpoint serves its ranged GETs:
// the head and the tail at once, then the body forward in ranges of 1 MiB,
// four in flight, each range read in pieces of 32 KiB by its own
// goroutine. With Forward, the body's ranges take their turns on one
// sequential reader: the GETs a NewReader of the whole stream makes.
// Without it, and with Forward but plain ReadAt calls, the bytes are the
// same.
func TestReaderAtForward(t *testing.T) {
	f := newPackedFixture(t, 4<<20)
	store := f.store.(*countStore)
	before := store.gets.Load()
	if _, err := read(t, f.v, f.refs); err != nil {
		t.Fatal(err)
	}
	sequential := store.gets.Load() - before

	// restore returns the GETs made for the head and tail, and for the
	// body
	restore := func(opt vault.ReaderAtOptions, sections bool) (int64, int64) {
		t.Helper()
		checkGoroutines(t)
		r := f.v.NewReaderAt(t.Context(), f.refs, opt)
		defer r.Close()
		open := func(off, n int64) io.ReadCloser {
			if sections {
				return r.Section(off, n)
			}
			return io.NopCloser(io.NewSectionReader(r, off, n))
		}
		// a range is opened when its request comes, in order, and read
		// by the request's own goroutine
		readRange := func(sr io.ReadCloser, dst []byte, off int64) {
			defer sr.Close()
			// hiding WriteTo and ReadFrom, as an HTTP response does
			if _, err := io.CopyBuffer(struct{ io.Writer }{bytes.NewBuffer(dst[:0])}, struct{ io.Reader }{sr}, make([]byte, 32<<10)); err != nil {
				t.Errorf("range %d+%d: %v", off, len(dst), err)
			}
		}
		size := int64(len(f.data))
		before := store.gets.Load()
		got := make([]byte, len(f.data))
		var wg sync.WaitGroup
		head, tail := open(0, 1<<20), open(size-64<<10, 64<<10)
		wg.Go(func() { readRange(head, got[:1<<20], 0) })
		wg.Go(func() { readRange(tail, got[size-64<<10:], size-64<<10) })
		wg.Wait()
		if !bytes.Equal(got[:1<<20], f.data[:1<<20]) || !bytes.Equal(got[size-64<<10:], f.data[size-64<<10:]) {
			t.Fatalf("%+v, sections %v: the head or the tail differs", opt, sections)
		}
		headTail := store.gets.Load() - before
		before = store.gets.Load()
		const span, inFlight = 1 << 20, 4
		clear(got)
		sem := make(chan struct{}, inFlight)
		for off := int64(4096); off < size; off += span {
			sem <- struct{}{}
			dst := got[off:min(off+span, size)]
			sr := open(off, int64(len(dst)))
			wg.Go(func() {
				defer func() { <-sem }()
				readRange(sr, dst, off)
			})
		}
		wg.Wait()
		if !bytes.Equal(got[4096:], f.data[4096:]) {
			t.Fatalf("%+v, sections %v: the stream read back differs", opt, sections)
		}
		return headTail, store.gets.Load() - before
	}
	_, cached := restore(vault.ReaderAtOptions{CacheChunks: 8}, true)
	_, plain := restore(vault.ReaderAtOptions{CacheChunks: 8, Forward: true}, false)
	ends, forward := restore(vault.ReaderAtOptions{CacheChunks: 8, Forward: true}, true)
	t.Logf("%d chunks: a sequential read made %d GETs; the body read in ranges, through the cache %d, plain reads with Forward %d, sections with Forward %d (and %d for the head and tail)",
		len(f.refs), sequential, cached, plain, forward, ends)
	// one more for a load the cache started ahead of the head's reads
	if forward > sequential+1 {
		t.Errorf("the body through sections with Forward: %d GETs; want at most %d, a sequential read's", forward, sequential+1)
	}
}
