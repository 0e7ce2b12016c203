package vault

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
)

// errReaderClosed is returned by reads after Close.
var errReaderClosed = errors.New("vault reader already closed")

// reader reassembles a stream from its chunks; [Vault.NewReader] makes
// one.
//
// Chunks are fetched a group at a time, each group with one ranged GET
// of its pack, a few groups ahead of the one being read; a chunk fetched
// stays sealed (and compressed) until it comes within openAhead chunks
// of the one being read, and is then opened on its own goroutine. So the
// GETs are long, which costs the store least, while the memory a reader
// holds is a few groups of sealed chunks and openAhead chunks of
// plaintext, whatever the chunks compress to and however long the stream.
type reader struct {
	v      *Vault
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan []*fetch // groups of fetches in stream order, readAheadGroups queued
	wg     sync.WaitGroup
	raws   sync.Pool // of *chunkBufs, for sealed chunks
	plains sync.Pool // of *[]byte, for opened ones

	// stream, for a reader of [Vault.NewStreamReader], is the stream
	// whose length and checksum it checks at the end, with sum hashing
	// every chunk made current; n counts their bytes.
	stream *Stream
	sum    *blake3.Hasher
	n      int64

	ahead   []*fetch // fetches taken from the queue, in order, after cur
	drained bool     // the queue is closed and empty
	cur     *fetch   // the chunk being read, nil if none
	off     int
	err     error // sticky
	closing sync.Once
}

// fetch is one chunk being loaded.
type fetch struct {
	ref   ChunkRef
	done  chan struct{} // closed once plain or err is set
	bufs  *chunkBufs
	plain []byte
	err   error

	mu      sync.Mutex
	arrived bool // bufs.raw holds the sealed chunk, for opening
	wanted  bool // the reader comes to it soon: open it once it arrives
	opening bool
}

const (
	// readAheadGroups is how many groups of chunks a reader fetches
	// ahead of those it has taken, besides the one waiting to be queued.
	readAheadGroups = 2
	// openAhead is how many chunks from the one being read on are
	// opened (decrypted, decompressed, verified) at once.
	openAhead = 8
)

// NewReader returns a reader of the stream made of chunks, in order. It
// loads a few chunks ahead, concurrently, and verifies each one completely
// (authentication, then the keyed hash of its plaintext against its id, and
// its size) before returning any of its bytes. A chunk that fails gives an
// error that is a *[ChunkError] naming it, matching [ErrCorrupt] for bad
// data or [blob.ErrNotExist] for a missing chunk; the stream stops there.
//
// The caller must Close the reader, which stops its goroutines; cancelling
// ctx also stops it, with ctx's error.
func (v *Vault) NewReader(ctx context.Context, chunks []ChunkRef) io.ReadCloser {
	return v.newReader(ctx, chunks, nil)
}

// NewStreamReader returns a reader of st, which checks st's length and
// checksum at the end: its last read returns an error matching
// [ErrCorrupt], in place of io.EOF, when they differ from what it read.
// It verifies each chunk's authentication and size as [Vault.NewReader]
// does, but not the keyed hash of its plaintext, which the stream's
// checksum covers: a caller must use nothing it read before it has read
// to the end without an error (reassembling a backup file, then
// restoring it). A stream without a checksum (a manifest written before
// checksums) is read as NewReader reads it.
func (v *Vault) NewStreamReader(ctx context.Context, st Stream) io.ReadCloser {
	if st.Checksum == "" {
		return v.newReader(ctx, st.Chunks, nil)
	}
	return v.newReader(ctx, st.Chunks, &st)
}

func (v *Vault) newReader(ctx context.Context, chunks []ChunkRef, st *Stream) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	r := &reader{
		v:      v,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan []*fetch, readAheadGroups),
		stream: st,
	}
	if st != nil {
		r.sum = blake3.New()
	}
	r.raws.New = func() any { return &chunkBufs{streamSum: st != nil} }
	r.plains.New = func() any { return new([]byte) }
	r.wg.Go(func() {
		defer close(r.queue)
		for len(chunks) > 0 {
			n := v.group(chunks)
			fs := make([]*fetch, n)
			bufs := make([]*chunkBufs, n)
			for i := range fs {
				bufs[i] = r.raws.Get().(*chunkBufs)
				fs[i] = &fetch{ref: chunks[i], done: make(chan struct{}), bufs: bufs[i]}
			}
			refs := chunks[:n]
			chunks = chunks[n:]
			r.wg.Go(func() {
				v.fetchGroup(ctx, refs, bufs, func(i int) { r.arrive(fs[i]) }, func(i int, plain []byte, err error) {
					fs[i].plain, fs[i].err = plain, err
					close(fs[i].done)
				})
			})
			select {
			case r.queue <- fs:
			case <-ctx.Done():
				// the group's fetch stops with ctx: Close waits for it
				return
			}
		}
	})
	return r
}

// arrive records that f's sealed chunk has been fetched, and opens it if
// the reader wants it already.
func (r *reader) arrive(f *fetch) { r.mark(f, func() { f.arrived = true }) }

// want marks f as soon to be read, and opens it if it has arrived.
func (r *reader) want(f *fetch) { r.mark(f, func() { f.wanted = true }) }

// mark updates f's state with set, under its lock, and opens f once it
// has both arrived and been wanted, once.
func (r *reader) mark(f *fetch, set func()) {
	f.mu.Lock()
	set()
	open := f.arrived && f.wanted && !f.opening
	f.opening = f.opening || open
	f.mu.Unlock()
	if open {
		r.open(f)
	}
}

// open opens f's sealed chunk on a goroutine of its own.
func (r *reader) open(f *fetch) {
	r.wg.Go(func() {
		p := r.plains.Get().(*[]byte)
		f.bufs.plain = (*p)[:0]
		f.plain, f.err = r.v.openFetched(r.ctx, f.ref, f.bufs)
		close(f.done)
	})
}

// release gives f's buffers back for later chunks.
func (r *reader) release(f *fetch) {
	if f.bufs == nil {
		return
	}
	if p := f.bufs.plain; cap(p) > 0 {
		f.bufs.plain = nil
		r.plains.Put(&p)
	}
	r.raws.Put(f.bufs)
	f.bufs, f.plain = nil, nil
}

// Group reads: at most maxGroup chunks, maxGroupBytes stored bytes and
// maxGroupPlain bytes of plaintext.
const (
	maxGroup      = 64
	maxGroupBytes = 8 << 20
	maxGroupPlain = 16 << 20
)

// group returns how many chunks from the start of refs lie in one pack
// close enough to each other to be read with one ranged GET, as far as
// this process knows: at least one. Chunks lie in their pack in about the
// order they were written (workers finish them a little out of order), so
// a group takes the chunks whose span in the pack, from the lowest offset
// to the highest end, holds at most maxGroupBytes and is at least half
// theirs; at most maxGroup chunks, of at most maxGroupPlain bytes.
func (v *Vault) group(refs []ChunkRef) int {
	var pack string
	var lo, hi, sum, plain int64
	for i, ref := range refs {
		if i == maxGroup || !validChunkID(ref.ID) {
			return max(i, 1)
		}
		id, _ := decodeID(ref.ID)
		loc, ok := v.index.lookupSized(id, ref.StoredSize)
		if !ok || loc.pack == "" {
			return max(i, 1)
		}
		plain += max(ref.Size, 0)
		start, end := int64(loc.offset), int64(loc.offset)+int64(loc.length)
		if i == 0 {
			pack, lo, hi, sum = loc.pack, start, end, end-start
			continue
		}
		nlo, nhi, nsum := min(lo, start), max(hi, end), sum+end-start
		if loc.pack != pack || nhi-nlo > maxGroupBytes || nhi-nlo > 2*nsum || plain > maxGroupPlain {
			return i
		}
		lo, hi, sum = nlo, nhi, nsum
	}
	return len(refs)
}

// loadGroup loads refs, which group found close together in one pack, into
// bufs (bufs[i] for refs[i]), and calls got with each chunk's outcome, in
// any order, from any goroutine: each chunk is opened as soon as
// fetchGroup has brought it, while the rest still stream in.
func (v *Vault) loadGroup(ctx context.Context, refs []ChunkRef, bufs []*chunkBufs, got func(i int, plain []byte, err error)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	v.fetchGroup(ctx, refs, bufs, func(i int) {
		wg.Go(func() {
			plain, err := v.openFetched(ctx, refs[i], bufs[i])
			got(i, plain, err)
		})
	}, got)
}

// fetchGroup fetches refs, which group found close together in one pack,
// into bufs (bufs[i] for refs[i]): with one ranged GET when there are
// several, calling arrived with each chunk's index as soon as its sealed
// bytes are in bufs[i].raw, for openFetched; the chunks the GET did not
// bring it loads one by one (so that a problem is found and named as
// loadChunk names it) and passes to loaded, opened or failed.
func (v *Vault) fetchGroup(ctx context.Context, refs []ChunkRef, bufs []*chunkBufs, arrived func(i int), loaded func(i int, plain []byte, err error)) {
	brought := make([]bool, len(refs))
	if len(refs) > 1 {
		err := v.readGroup(ctx, refs, bufs, func(i int) {
			brought[i] = true
			arrived(i)
		})
		if err == nil {
			return
		}
	}
	for i, ref := range refs {
		if err := ctx.Err(); err != nil && !brought[i] {
			// stopped: no GET for each chunk left
			loaded(i, nil, &ChunkError{ID: ref.ID, Err: err})
			continue
		}
		if !brought[i] {
			plain, err := v.loadChunk(ctx, ref.ID, ref.Size, ref.StoredSize, bufs[i])
			loaded(i, plain, err)
		}
	}
}

// openFetched opens the chunk ref that fetchGroup brought into bufs.raw;
// when that fails it loads the chunk again on its own, from where the
// index says now, which names the problem or finds the chunk moved.
func (v *Vault) openFetched(ctx context.Context, ref ChunkRef, bufs *chunkBufs) ([]byte, error) {
	plain, err := v.openSealedChunk(ref.ID, ref.Size, ref.StoredSize, bufs)
	if err != nil {
		plain, err = v.loadChunk(ctx, ref.ID, ref.Size, ref.StoredSize, bufs)
	}
	return plain, err
}

// readGroup reads the sealed chunks refs, close together in one pack,
// into their bufs' raw buffers with one ranged GET of their span, read
// in the order of the pack (the bytes between them are skipped), and
// calls arrived with each chunk's index once its raw buffer holds it and
// nothing will touch the buffer again. On an error, the chunks not yet
// passed to arrived are not read.
func (v *Vault) readGroup(ctx context.Context, refs []ChunkRef, bufs []*chunkBufs, arrived func(i int)) error {
	locs := make([]chunkLoc, len(refs))
	for i, ref := range refs {
		sum, _ := decodeID(ref.ID)
		loc, ok := v.index.lookupSized(sum, ref.StoredSize)
		if !ok {
			return errors.New("not in the index")
		}
		if loc.pack != locs[0].pack && i > 0 {
			return errors.New("not in one pack")
		}
		locs[i] = loc
	}
	order := make([]int, len(refs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(locs[a].offset, locs[b].offset) })
	lo := int64(locs[order[0]].offset)
	var hi int64
	for _, loc := range locs {
		hi = max(hi, int64(loc.offset)+int64(loc.length))
	}
	rc, err := v.store.GetRange(ctx, packKey(locs[0].pack), lo, hi-lo)
	if err != nil {
		return err
	}
	defer rc.Close()
	// a chunk read is passed on only once the next one is not a copy of
	// it, since opening a chunk decrypts its buffer in place
	var read []int
	pass := func() {
		for _, i := range read {
			arrived(i)
		}
		read = read[:0]
	}
	pos, prev := lo, -1
	for _, i := range order {
		loc := locs[i]
		switch at := int64(loc.offset); {
		case prev >= 0 && locs[prev].offset == loc.offset && locs[prev].length == loc.length:
			// a chunk listed twice in the group
			bufs[i].raw = append(bufs[i].raw[:0], bufs[prev].raw...)
			read = append(read, i)
			continue
		case at < pos:
			return errors.New("chunks overlap in their pack")
		}
		pass()
		if at := int64(loc.offset); at > pos {
			if _, err := io.CopyN(io.Discard, rc, at-pos); err != nil {
				return err
			}
		}
		raw := bufs[i].raw[:0]
		if cap(raw) < int(loc.length) {
			raw = make([]byte, 0, loc.length)
		}
		raw = raw[:loc.length]
		if _, err := io.ReadFull(rc, raw); err != nil {
			return err
		}
		bufs[i].raw = raw
		read = append(read, i)
		pos, prev = int64(loc.offset)+int64(loc.length), i
	}
	pass()
	return nil
}

// next makes the next chunk current, returning false at the end of the
// stream or on an error, which it records.
func (r *reader) next() bool {
	if r.cur != nil {
		r.release(r.cur)
		r.cur = nil
	}
	// take groups from the queue until openAhead chunks are known, waiting
	// only when none is
	for len(r.ahead) < openAhead && !r.drained {
		var fs []*fetch
		var ok bool
		if len(r.ahead) == 0 {
			select {
			case fs, ok = <-r.queue:
			case <-r.ctx.Done():
				r.err = fmt.Errorf("vault reader: %w", r.ctx.Err())
				return false
			}
		} else {
			select {
			case fs, ok = <-r.queue:
			default:
				ok = true
			}
		}
		r.drained = !ok
		r.ahead = append(r.ahead, fs...)
		if ok && len(fs) == 0 {
			break // nothing queued yet: go on with what is known
		}
	}
	if len(r.ahead) == 0 {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("vault reader: %w", err)
		} else {
			r.err = r.checkStream()
		}
		return false
	}
	for _, f := range r.ahead[:min(openAhead, len(r.ahead))] {
		r.want(f)
	}
	f := r.ahead[0]
	r.ahead = r.ahead[1:]
	select {
	case <-f.done:
	case <-r.ctx.Done():
		<-f.done
	}
	if f.err == nil {
		f.err = r.ctx.Err()
	}
	if f.err != nil {
		r.release(f)
		r.err = fmt.Errorf("read vault stream: %w", f.err)
		return false
	}
	r.cur, r.off = f, 0
	if r.sum != nil {
		r.sum.Write(f.plain)
		r.n += int64(len(f.plain))
	}
	return true
}

// checkStream is the error at the end of the stream: io.EOF, unless a
// reader of NewStreamReader read other than its stream's length and
// checksum.
func (r *reader) checkStream() error {
	if r.stream == nil {
		return io.EOF
	}
	if r.n != r.stream.Size {
		return fmt.Errorf("%w: the stream's chunks hold %d bytes; its manifest says %d", ErrCorrupt, r.n, r.stream.Size)
	}
	if got := "blake3:" + hex.EncodeToString(r.sum.Sum(nil)); got != r.stream.Checksum {
		return fmt.Errorf("%w: the stream's checksum is %s; its manifest says %s", ErrCorrupt, got, r.stream.Checksum)
	}
	return io.EOF
}

// Read implements io.Reader.
func (r *reader) Read(p []byte) (int, error) {
	for r.cur == nil || r.off == len(r.cur.plain) {
		if r.err != nil {
			return 0, r.err
		}
		if !r.next() {
			return 0, r.err
		}
	}
	n := copy(p, r.cur.plain[r.off:])
	r.off += n
	return n, nil
}

// WriteTo implements io.WriterTo, sparing io.Copy a buffer.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if r.cur != nil && r.off < len(r.cur.plain) {
			n, err := w.Write(r.cur.plain[r.off:])
			r.off += n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if r.err != nil {
			if r.err == io.EOF {
				return total, nil
			}
			return total, r.err
		}
		r.next()
	}
}

// Close stops the reader and its goroutines, and releases its buffers.
func (r *reader) Close() error {
	r.closing.Do(func() {
		r.cancel()
		r.wg.Wait()
		for range r.queue {
		}
		r.cur, r.ahead = nil, nil
		if r.err == nil || r.err == io.EOF {
			r.err = errReaderClosed
		}
	})
	return nil
}
