package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
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
	readAhead := runtime.GOMAXPROCS(0) + 2
	r := &reader{
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan *fetch, readAhead),
	}
	r.pool.New = func() any { return &chunkBufs{} }
	r.wg.Go(func() {
		defer close(r.queue)
		for _, ref := range chunks {
			f := &fetch{done: make(chan struct{}), bufs: r.pool.Get().(*chunkBufs)}
			select {
			case r.queue <- f:
			case <-ctx.Done():
				r.pool.Put(f.bufs)
				return
			}
			r.wg.Go(func() {
				defer close(f.done)
				f.plain, f.err = v.loadChunk(ctx, ref.ID, ref.Size, ref.StoredSize, f.bufs)
			})
		}
	})
	return r
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
