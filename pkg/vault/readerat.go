package vault

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
)

// ReaderAtOptions tunes [Vault.NewReaderAt]. The zero value is ready to use.
type ReaderAtOptions struct {
	// CacheChunks is how many chunks the reader holds at once, loading or
	// loaded. Zero means 8. Each holds the sealed chunk and, if it was
	// compressed, its plaintext: at most 8 MiB, about 2 MiB on average. A
	// read that finds every place taken by chunks other reads are using
	// waits for one to come free. With n ranged reads in flight, about
	// n × (ReadAhead + 2) places let every read find its chunks loaded
	// ahead; fewer cost a few chunks fetched twice (BenchmarkReaderAt
	// reports how many).
	CacheChunks int
	// ReadAhead is how many chunks after the one a read touches are loaded
	// in the background, so that a reader going forward finds them ready.
	// Zero means 4; a negative value turns read-ahead off. Read-ahead only
	// takes free places in the cache or those of chunks already read, so
	// it is cut short when the cache is full of chunks still to be read.
	ReadAhead int
	// Forward serves reads that go on where earlier ones ended from one
	// sequential reader of the stream, as [Vault.NewReader] reads it,
	// the sections ([ReaderAt.Section]) a little further ahead waiting
	// their turn: for a caller that reads the stream forward in ranges,
	// several in flight, as SQL Server's RESTORE FROM URL does. Other
	// reads use the cache. The sequential reader holds a few groups of
	// sealed chunks and a few chunks of plaintext besides the cache.
	Forward bool
}

// Defaults of ReaderAtOptions.
const (
	defaultCacheChunks = 8
	defaultReadAhead   = 4
)

// ReaderAt gives random access to a stored stream; [Vault.NewReaderAt]
// makes one. It is safe for concurrent use.
type ReaderAt struct {
	v      *Vault
	chunks []ChunkRef
	offs   []int64 // offs[i] is where chunks[i] starts; offs[len(chunks)] is the size
	err    error   // why chunks make no stream, if they do not
	cache  int
	ahead  int
	fwd    *forward // nil unless ReaderAtOptions.Forward

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // load goroutines

	mu      sync.Mutex
	closed  bool
	entries map[string]*cacheEntry // by chunk id, so a chunk repeated in the stream is loaded once
	free    []*chunkBufs           // buffers of chunks evicted or failed, for reuse
	tick    uint64                 // clock of uses, for LRU
	seen    []bool                 // seen[i]: a read has touched chunks[i]
	changed chan struct{}          // closed, and replaced, when a place may have come free
}

// cacheEntry is a chunk in a ReaderAt's cache, loading or loaded. Its
// fields other than done, plain and err are guarded by ReaderAt.mu; plain
// and err are set before done is closed and not changed after.
type cacheEntry struct {
	id    string
	done  chan struct{}
	ready bool // done is closed
	bufs  *chunkBufs
	plain []byte
	err   error
	pins  int // reads waiting for the chunk or copying from it
	// lo and hi bound the part of the chunk reads have copied, lo == hi
	// if none; when reads left gaps, the largest part found.
	lo, hi int64
	last   uint64 // tick of its last use, or of its creation
}

var _ io.ReaderAt = (*ReaderAt)(nil)

// NewReaderAt returns a reader of the stream made of chunks, in order, at
// any offset: for serving ranged reads of a backup, such as SQL Server's
// RESTORE FROM URL makes. Every byte it returns comes from a chunk verified
// completely, as [Vault.NewReader] verifies them; a chunk that fails gives
// an error wrapping a *[ChunkError] naming it, matching [ErrCorrupt] or
// [blob.ErrNotExist]. A failure is not remembered: a later read of the
// chunk loads it again.
//
// It keeps a few chunks decoded, as opt says, and loads the chunks after
// those a read touches in the background. The caller must Close it, which
// stops its goroutines; cancelling ctx also stops it, and reads then fail
// with ctx's error.
func (v *Vault) NewReaderAt(ctx context.Context, chunks []ChunkRef, opt ReaderAtOptions) *ReaderAt {
	if opt.CacheChunks <= 0 {
		opt.CacheChunks = defaultCacheChunks
	}
	if opt.ReadAhead == 0 {
		opt.ReadAhead = defaultReadAhead
	}
	ctx, cancel := context.WithCancelCause(ctx)
	r := &ReaderAt{
		v:       v,
		chunks:  chunks,
		offs:    make([]int64, len(chunks)+1),
		cache:   opt.CacheChunks,
		ahead:   opt.ReadAhead,
		ctx:     ctx,
		cancel:  cancel,
		entries: make(map[string]*cacheEntry, opt.CacheChunks),
		seen:    make([]bool, len(chunks)),
		changed: make(chan struct{}),
	}
	if opt.Forward {
		r.fwd = newForward()
	}
	for i, c := range chunks {
		// loadChunk checks the size only when it is not negative, and the
		// offsets are only right if it checks.
		if c.Size < 0 && r.err == nil {
			r.err = &ChunkError{ID: c.ID, Err: fmt.Errorf("negative size %d in the chunk list", c.Size)}
		}
		r.offs[i+1] = r.offs[i] + max(c.Size, 0)
	}
	return r
}

// Size returns the length of the stream.
func (r *ReaderAt) Size() int64 { return r.offs[len(r.chunks)] }

// ReadAt implements io.ReaderAt: it reads len(p) bytes of the stream from
// off, or fewer with an error, io.EOF if the stream ends first. Concurrent
// calls share the chunks they both need.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.readAt(p, off, nil) }

// readAt is ReadAt, for section s if not nil.
func (r *ReaderAt) readAt(p []byte, off int64, s *section) (int, error) {
	if err := context.Cause(r.ctx); err != nil {
		return 0, fmt.Errorf("read vault stream: %w", err)
	}
	if r.err != nil {
		return 0, fmt.Errorf("read vault stream: %w", r.err)
	}
	if off < 0 {
		return 0, fmt.Errorf("read vault stream at %d: negative offset", off)
	}
	size := r.Size()
	if off >= size {
		return 0, io.EOF
	}
	if r.fwd != nil {
		if n, ok := r.readForward(p, off, size, s); ok {
			if n < len(p) {
				return n, io.EOF
			}
			return n, nil
		}
	}
	end := min(off+int64(len(p)), size)
	// The first chunk that ends after off; zero-length chunks end where
	// they start, so this skips them.
	i := sort.Search(len(r.chunks), func(i int) bool { return r.offs[i+1] > off })
	n := 0
	for pos := off; pos < end; i++ {
		c, err := r.copyFrom(i, p[n:], pos, end)
		if err != nil {
			return n, fmt.Errorf("read vault stream at %d: %w", pos, err)
		}
		n += c
		pos += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// copyFrom copies into p the bytes of chunk i from pos up to end, loading
// the chunk if need be, and starts the read-ahead that follows it.
func (r *ReaderAt) copyFrom(i int, p []byte, pos, end int64) (int, error) {
	e, err := r.acquire(i)
	if err != nil {
		return 0, err
	}
	// Started after acquire, so that the chunk this read waits for is
	// loaded first.
	r.readAhead(i, end)
	select {
	case <-e.done:
	case <-r.ctx.Done():
		r.release(e, 0, 0)
		return 0, context.Cause(r.ctx)
	}
	if e.err != nil {
		r.release(e, 0, 0)
		return 0, e.err
	}
	ref := r.chunks[i]
	if int64(len(e.plain)) != ref.Size {
		// The same id listed twice with different sizes: the stream is
		// not what its list says.
		r.release(e, 0, 0)
		return 0, corruptChunk(ref.ID, "holds %d bytes; the stream expects %d", len(e.plain), ref.Size)
	}
	start := pos - r.offs[i]
	stop := min(end, r.offs[i+1]) - r.offs[i]
	n := copy(p, e.plain[start:stop])
	r.release(e, start, stop)
	return n, nil
}

// cover records that a read copied bytes [lo, hi) of e's chunk.
func (e *cacheEntry) cover(lo, hi int64) {
	switch {
	case lo == hi:
	case e.lo == e.hi || hi-lo > e.hi-e.lo && (hi < e.lo || lo > e.hi):
		e.lo, e.hi = lo, hi
	case hi >= e.lo && lo <= e.hi:
		e.lo, e.hi = min(e.lo, lo), max(e.hi, hi)
	}
}

// Eviction ranks: a chunk read whole goes first, then one read in part,
// whose rest another read is likely to want soon (a range that ends inside
// it, while the range after it has been read), then one loaded ahead and
// not read yet.
const (
	rankReadWhole = iota
	rankReadInPart
	rankUnread
)

func (e *cacheEntry) rank() int {
	switch {
	case e.lo == e.hi:
		return rankUnread
	case e.lo == 0 && e.hi == int64(len(e.plain)):
		return rankReadWhole
	}
	return rankReadInPart
}

// acquire returns the entry of chunk i, pinned, starting its load if it is
// not cached. When the cache is full of chunks it cannot evict, it waits
// for one to come free: the pins that hold them last only while reads
// copy, never while a read waits for another chunk, so this ends.
func (r *ReaderAt) acquire(i int) (*cacheEntry, error) {
	r.mu.Lock()
	for {
		if r.closed {
			r.mu.Unlock()
			return nil, errReaderClosed
		}
		e := r.entries[r.chunks[i].ID]
		if e == nil {
			e, _ = r.startLocked(i, len(r.chunks), true)
		}
		if e != nil {
			e.pins++
			r.mu.Unlock()
			return e, nil
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-r.ctx.Done():
			return nil, context.Cause(r.ctx)
		}
		r.mu.Lock()
	}
}

// release unpins e, from which a read copied bytes [lo, hi).
func (r *ReaderAt) release(e *cacheEntry, lo, hi int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.cover(lo, hi)
	e.pins--
	r.tick++
	e.last = r.tick
	if e.pins == 0 {
		r.signalLocked()
	}
}

// readAhead starts loading the chunks after chunk i that are not cached,
// as far as the cache has room without evicting chunks not yet read. end
// is where the read touching chunk i ends. Past it, chunks a read has
// already touched are skipped: with several ranges in flight, the read of
// the next range has been through them (and the cache may have let them
// go), and loading them again would only evict chunks still wanted.
func (r *ReaderAt) readAhead(i int, end int64) {
	if r.ahead <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[i] = true
	limit := min(i+1+r.ahead, len(r.chunks))
	skip := func(j int) bool {
		return r.offs[j] >= end && r.seen[j] || r.entries[r.chunks[j].ID] != nil
	}
	// Nothing until half the read-ahead is used up, so that it comes a
	// group at a time (one ranged GET), not a chunk after each read.
	first := i + 1
	for first < limit && skip(first) {
		first++
	}
	if first == limit || first-i > (r.ahead+1)/2 {
		return
	}
	for j := first; j < limit; j++ {
		if skip(j) {
			continue
		}
		e, n := r.startLocked(j, limit, false)
		if e == nil {
			return
		}
		j += n - 1
	}
}

// readerAtGroup bounds the chunks one GET of a ReaderAt brings, as
// before NewReader's groups grew to maxGroup: its cache is small (the
// streamer's endpoint shares 32 MiB between a backup's stripes), and
// groups of 64 evicted chunks the ranges in flight still wanted. In one
// run each of BenchmarkBackup1GiB/url-4-stripes, restore went from 147
// MB/s with groups of 64 to 179 with 16, MinIO's CPU from 5.8 to 4.3
// s/GiB. With the endpoint's cache doubled to 64 MiB, groups of 32 had the
// room: BenchmarkBackup1GiB/url's restore made 218 GETs with them against
// 353 with 16 (before the endpoint read forward, see
// ReaderAtOptions.Forward).
const readerAtGroup = 32

// startLocked starts loading chunk i into a new entry, and with it, in the
// same ranged GET, the chunks after it (up to limit) that follow it in its
// pack and are not cached, evicting chunks if the cache is full. It
// returns chunk i's entry and how many chunks it started, or nil if there
// is no room or the reader is stopping. forRead says a read needs chunk i
// now: it may then evict any chunk loaded and unpinned, while read-ahead
// (and the chunks after i) evict only chunks read whole, lest readers
// evict each other's read-ahead, or the head of a chunk whose tail began
// the range after.
func (r *ReaderAt) startLocked(i, limit int, forRead bool) (*cacheEntry, int) {
	if r.closed || r.ctx.Err() != nil {
		return nil, 0
	}
	var es []*cacheEntry
	for k := range r.v.group(r.chunks[i:min(max(limit, i+1), i+readerAtGroup)]) {
		ref := r.chunks[i+k]
		if k > 0 && r.entries[ref.ID] != nil {
			break
		}
		if len(r.entries) >= r.cache {
			victim := r.victimLocked(forRead && k == 0)
			if victim == nil {
				break
			}
			delete(r.entries, victim.id)
			r.free = append(r.free, victim.bufs)
			victim.bufs = nil
		}
		var bufs *chunkBufs
		if n := len(r.free); n > 0 {
			bufs, r.free = r.free[n-1], r.free[:n-1]
		} else {
			bufs = &chunkBufs{}
		}
		r.tick++
		e := &cacheEntry{id: ref.ID, done: make(chan struct{}), bufs: bufs, last: r.tick}
		r.entries[ref.ID] = e
		es = append(es, e)
	}
	if len(es) == 0 {
		return nil, 0
	}
	refs := r.chunks[i : i+len(es)]
	r.wg.Go(func() {
		bufs := make([]*chunkBufs, len(es))
		for k, e := range es {
			bufs[k] = e.bufs
		}
		r.v.loadGroup(r.ctx, refs, bufs, func(k int, plain []byte, err error) { r.loaded(es[k], plain, err) })
	})
	return es[0], len(es)
}

// victimLocked returns the entry to evict, loaded and unpinned, of the
// lowest rank and least recently used within it; unless forRead, only a
// chunk read whole.
func (r *ReaderAt) victimLocked(forRead bool) *cacheEntry {
	var victim *cacheEntry
	vrank := 0
	for _, e := range r.entries {
		if !e.ready || e.pins > 0 {
			continue
		}
		rank := e.rank()
		if rank != rankReadWhole && !forRead {
			continue
		}
		if victim == nil || rank < vrank || rank == vrank && e.last < victim.last {
			victim, vrank = e, rank
		}
	}
	return victim
}

// loaded records the outcome of loading e's chunk.
func (r *ReaderAt) loaded(e *cacheEntry, plain []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.plain, e.err, e.ready = plain, err, true
	if err != nil {
		// Not cached: a store's passing failure must not stick, and the
		// reads waiting now get the error from e.
		if r.entries[e.id] == e {
			delete(r.entries, e.id)
		}
		r.free = append(r.free, e.bufs)
		e.plain, e.bufs = nil, nil
	}
	close(e.done)
	r.signalLocked()
}

// signalLocked wakes the reads waiting for a place in the cache.
func (r *ReaderAt) signalLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Trim lets go of the chunks cached and not being read or loaded, and of
// spare buffers: a reader kept for later, while another is read, holds
// no memory. Later reads load what they need again.
func (r *ReaderAt) Trim() {
	if r.fwd != nil {
		r.fwd.trim(false)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.entries {
		if e.ready && e.pins == 0 {
			delete(r.entries, id)
		}
	}
	r.free = nil
	r.signalLocked()
}

// Close stops the reader's background loads and waits for them, and
// releases its cache. Reads after Close fail; reads running meanwhile may
// fail too. It always returns nil.
func (r *ReaderAt) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	if r.fwd != nil {
		r.fwd.trim(true)
	}
	r.cancel(errReaderClosed)
	r.wg.Wait()
	r.mu.Lock()
	r.entries, r.free = nil, nil
	r.mu.Unlock()
	return nil
}

// VerifyStream reads and verifies every chunk of the stream made of chunks,
// as [Vault.NewReader] does, loading as many at once, and discards the
// data. It returns the first chunk that fails as an error wrapping a
// *[ChunkError], matching [ErrCorrupt] or [blob.ErrNotExist]: a caller can
// make sure a recovery point is whole before it starts anything that a
// half-read one would leave broken, such as a restore over a database.
func (v *Vault) VerifyStream(ctx context.Context, chunks []ChunkRef) error {
	r := v.NewReader(ctx, chunks)
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("verify stream: %w", err)
	}
	return nil
}
