package vault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
)

// errReaderClosed is returned by reads after Close.
var errReaderClosed = errors.New("vault reader already closed")

// reader reassembles a stream from its chunks; [Vault.NewReader] makes
// one.
type reader struct {
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan *fetch // fetches in stream order, at most readAhead queued
	wg     sync.WaitGroup
	pool   sync.Pool // of *chunkBufs

	cur     *fetch // the chunk being read, nil if none
	off     int
	err     error // sticky
	closing sync.Once
}

// fetch is one chunk being loaded.
type fetch struct {
	done  chan struct{}
	bufs  *chunkBufs
	plain []byte
	err   error
}

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
	ctx, cancel := context.WithCancel(ctx)
	// chunks follow one another in their packs as they were written: a
	// few are read with one ranged GET, several GETs in flight
	readAhead := max(3, runtime.GOMAXPROCS(0)) * maxGroup
	r := &reader{
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan *fetch, readAhead),
	}
	r.pool.New = func() any { return &chunkBufs{} }
	r.wg.Go(func() {
		defer close(r.queue)
		for len(chunks) > 0 {
			n := v.group(chunks)
			fs := make([]*fetch, n)
			for i := range fs {
				fs[i] = &fetch{done: make(chan struct{}), bufs: r.pool.Get().(*chunkBufs)}
				select {
				case r.queue <- fs[i]:
				case <-ctx.Done():
					// the group will not be loaded: its queued fetches end
					// with ctx's error, for Close to drain
					for _, f := range fs[:i] {
						f.err = ctx.Err()
						close(f.done)
					}
					r.pool.Put(fs[i].bufs)
					return
				}
			}
			refs := chunks[:n]
			chunks = chunks[n:]
			r.wg.Go(func() {
				bufs := make([]*chunkBufs, len(fs))
				for i, f := range fs {
					bufs[i] = f.bufs
				}
				v.loadGroup(ctx, refs, bufs, func(i int, plain []byte, err error) {
					fs[i].plain, fs[i].err = plain, err
					close(fs[i].done)
				})
			})
		}
	})
	return r
}

// Group reads: at most maxGroup chunks, maxGroupBytes stored bytes.
const (
	maxGroup      = 16
	maxGroupBytes = 8 << 20
)

// group returns how many chunks from the start of refs lie in one pack
// close enough to each other to be read with one ranged GET, as far as
// this process knows: at least one. Chunks lie in their pack in about the
// order they were written (workers finish them a little out of order), so
// a group takes the chunks whose span in the pack, from the lowest offset
// to the highest end, holds at most maxGroupBytes and is at least half
// theirs; at most maxGroup chunks.
func (v *Vault) group(refs []ChunkRef) int {
	var pack string
	var lo, hi, sum int64
	for i, ref := range refs {
		if i == maxGroup || !validChunkID(ref.ID) {
			return max(i, 1)
		}
		id, _ := decodeID(ref.ID)
		loc, ok := v.index.lookupSized(id, ref.StoredSize)
		if !ok || loc.pack == "" {
			return max(i, 1)
		}
		start, end := int64(loc.offset), int64(loc.offset)+int64(loc.length)
		if i == 0 {
			pack, lo, hi, sum = loc.pack, start, end, end-start
			continue
		}
		nlo, nhi, nsum := min(lo, start), max(hi, end), sum+end-start
		if loc.pack != pack || nhi-nlo > maxGroupBytes || nhi-nlo > 2*nsum {
			return i
		}
		lo, hi, sum = nlo, nhi, nsum
	}
	return len(refs)
}

// loadGroup loads refs, which group found close together in one pack, into
// bufs (bufs[i] for refs[i]), and calls got with each chunk's outcome, in
// order: with one ranged GET when there are several, chunk by chunk (so
// that a problem is found and named as loadChunk names it) when that
// fails.
func (v *Vault) loadGroup(ctx context.Context, refs []ChunkRef, bufs []*chunkBufs, got func(i int, plain []byte, err error)) {
	if len(refs) > 1 {
		if err := v.readGroup(ctx, refs, bufs); err == nil {
			for i, ref := range refs {
				plain, err := v.openSealedChunk(ref.ID, ref.Size, ref.StoredSize, bufs[i])
				if err != nil {
					// read where the index said a moment ago: the chunk
					// alone names the problem, or finds it moved
					plain, err = v.loadChunk(ctx, ref.ID, ref.Size, ref.StoredSize, bufs[i])
				}
				got(i, plain, err)
			}
			return
		}
	}
	for i, ref := range refs {
		plain, err := v.loadChunk(ctx, ref.ID, ref.Size, ref.StoredSize, bufs[i])
		got(i, plain, err)
	}
}

// readGroup reads the sealed chunks refs, close together in one pack,
// into their bufs' raw buffers with one ranged GET of their span, read
// in the order of the pack (the bytes between them are skipped).
func (v *Vault) readGroup(ctx context.Context, refs []ChunkRef, bufs []*chunkBufs) error {
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
	pos, prev := lo, -1
	for _, i := range order {
		loc := locs[i]
		switch at := int64(loc.offset); {
		case prev >= 0 && locs[prev].offset == loc.offset && locs[prev].length == loc.length:
			// a chunk listed twice in the group
			bufs[i].raw = append(bufs[i].raw[:0], bufs[prev].raw...)
			continue
		case at < pos:
			return errors.New("chunks overlap in their pack")
		case at > pos:
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
		pos, prev = int64(loc.offset)+int64(loc.length), i
	}
	return nil
}

// next makes the next chunk current, returning false at the end of the
// stream or on an error, which it records.
func (r *reader) next() bool {
	if r.cur != nil {
		r.pool.Put(r.cur.bufs)
		r.cur = nil
	}
	var f *fetch
	var ok bool
	select {
	case f, ok = <-r.queue:
	case <-r.ctx.Done():
	}
	if !ok {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("vault reader: %w", err)
		} else {
			r.err = io.EOF
		}
		return false
	}
	select {
	case <-f.done:
	case <-r.ctx.Done():
		<-f.done
	}
	if f.err == nil {
		f.err = r.ctx.Err()
	}
	if f.err != nil {
		r.pool.Put(f.bufs)
		r.err = fmt.Errorf("read vault stream: %w", f.err)
		return false
	}
	r.cur, r.off = f, 0
	return true
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
		for f := range r.queue {
			<-f.done
		}
		r.cur = nil
		if r.err == nil || r.err == io.EOF {
			r.err = errReaderClosed
		}
	})
	return nil
}
