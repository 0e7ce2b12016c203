package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// WriterOptions tunes a Writer. The zero value is ready to use.
type WriterOptions struct {
	// Workers is how many chunks are hashed, compressed, sealed and
	// uploaded at once. Zero means GOMAXPROCS, which keeps every core busy
	// when the store is fast. A store with high latency (S3 over a WAN)
	// needs more to keep enough uploads in flight; CPU work stays bounded
	// by GOMAXPROCS whatever the number.
	Workers int
	// InFlight bounds the chunks held in memory at once, being cut, queued
	// or being worked on; each takes a buffer of the largest chunk (1 MiB
	// in a new vault, 4 MiB in one upgraded from format 1), in which it
	// is also sealed. Zero, or less than Workers, means
	// 2*Workers+1.
	InFlight int
	// Compression is how chunks are compressed: Zstd (also the zero
	// value), S2, or Uncompressed for data known not to compress
	// (encrypted or already compressed backups). Chunks that do not shrink
	// are stored uncompressed whatever it is. A value ParseCompression
	// does not accept fails the stream at its first Write.
	Compression Compression
	// Uploads is how many packs are stored at once while the next fills;
	// each holds a buffer of about 21 MiB. Zero means 2. A store with high
	// latency needs more.
	Uploads int
	// PackSize is the size at which a pack is closed and stored. Zero
	// means 16 MiB; 1 stores every chunk in a pack of its own, as tests
	// that damage one chunk need.
	PackSize int
	// Session is the writer session that protects what the writer
	// deduplicates against from garbage collection ([Vault.OpenSession]);
	// it must stay open until the stream is named by a draft or manifest,
	// and the writer fails if it ends first. Nil means a session of the
	// writer's own, opened by NewWriter and closed by Close: enough for a
	// stream committed before Close returns, not for one whose draft is
	// stored after.
	Session *Session
}

func (o *WriterOptions) setDefaults() {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.InFlight < o.Workers {
		o.InFlight = 2*o.Workers + 1
	}
	if o.Uploads <= 0 {
		o.Uploads = 2
	}
	if o.PackSize <= 0 || o.PackSize > packTarget {
		o.PackSize = packTarget
	}
	if o.Compression == "" {
		o.Compression = Zstd
	}
}

// Result describes a stream written to the vault, once its Writer is
// closed. Its Chunks, Size and Checksum are what a [Manifest] records.
type Result struct {
	// Chunks are the stream's chunks in order.
	Chunks []ChunkRef
	// Size is the stream's length.
	Size int64
	// Checksum is "blake3:" and the hex BLAKE3-256 hash (unkeyed) of the
	// whole stream.
	Checksum string
	// NewChunks and NewBytes count the chunks, and their plaintext bytes,
	// that were uploaded because the vault did not have them.
	NewChunks int
	NewBytes  int64
	// StoredBytes is the sealed, possibly compressed, size of the new
	// chunks: what this stream added to the store.
	StoredBytes int64
	// DedupBytes counts the plaintext bytes of chunks the vault already had.
	DedupBytes int64
}

// inputBlockSize is the unit in which Write hands data to the chunker.
const inputBlockSize = 1 << 20

// Writer stores a stream in the vault. Create one with [Vault.NewWriter],
// write the stream into it, then Close it and read its Result.
//
// Inside, Write hands the bytes to one chunker goroutine, which cuts them
// into chunks and feeds a pool of workers that hash, compress and seal
// them into packs, which are stored a few at once. A fixed number of
// chunks and packs are in flight at once, so a slow store slows Write
// down rather than filling memory.
//
// Write and Close must not be called concurrently. The first error of any
// stage (an upload, ctx ending) aborts the whole stream: that Write or a
// later one, or Close, returns it. A Writer must always be closed, which
// stops its goroutines even after an error.
type Writer struct {
	v      *Vault
	opts   WriterOptions
	ctx    context.Context
	cancel context.CancelCauseFunc
	// session is the writer's own session, closed with it, if
	// opts.Session is nil; stopWatch stops watching the session
	session   *Session
	stopWatch func() bool
	closeCtx  context.Context // for closing the session once ctx has ended

	sum    *blake3.Hasher
	size   int64
	block  []byte      // the input block being filled, nil if none
	blocks chan []byte // to the chunker
	free   chan []byte // empty input blocks
	work   chan chunkJob
	wg     sync.WaitGroup
	own    *knownSet // the chunks this stream stored
	probe  compressProbe
	packer *packer

	mu     sync.Mutex // guards refs and res
	refs   []ChunkRef
	res    Result
	closed bool
	err    error // Close's result
}

type chunkJob struct {
	seq  int
	buf  []byte // chunkBufSize() long
	data []byte // the chunk, chunkData(buf)
}

// errWriterClosed is returned by writes after Close.
var errWriterClosed = errors.New("vault writer already closed")

// NewWriter starts a Writer that stores a stream in the vault. Cancelling
// ctx, or the end of opts.Session, aborts the stream. Without
// opts.Session it opens a session of its own first; if that fails, the
// stream fails with the error.
func (v *Vault) NewWriter(ctx context.Context, opts WriterOptions) *Writer {
	opts.setDefaults()
	closeCtx := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Writer{
		v:        v,
		opts:     opts,
		ctx:      ctx,
		cancel:   cancel,
		closeCtx: closeCtx,
		sum:      blake3.New(),
		blocks:   make(chan []byte, 2),
		free:     make(chan []byte, 4),
		work:     make(chan chunkJob, opts.Workers),
		own:      newKnownSet(),
	}
	sess := opts.Session
	if sess == nil {
		var err error
		if sess, err = v.OpenSession(ctx, SessionOptions{}); err != nil {
			w.fail(err)
		}
		w.session = sess
	}
	if sess != nil {
		w.stopWatch = context.AfterFunc(sess.Context(), func() { w.fail(context.Cause(sess.Context())) })
	}
	if _, err := ParseCompression(string(opts.Compression)); err != nil {
		w.fail(err)
	}
	w.packer = newPacker(ctx, v, opts.Uploads, opts.PackSize, w.fail)
	for range cap(w.free) {
		w.free <- make([]byte, 0, inputBlockSize)
	}
	chunkBufs := make(chan []byte, opts.InFlight)
	w.wg.Go(func() { w.chunkLoop(chunkBufs) })
	for range opts.Workers {
		w.wg.Go(func() { w.workLoop(chunkBufs) })
	}
	return w
}

// fail aborts the stream with err, unless it already failed.
func (w *Writer) fail(err error) { w.cancel(err) }

// failure returns why the stream was aborted, or nil.
func (w *Writer) failure() error {
	if w.ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("vault writer: %w", context.Cause(w.ctx))
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	if err := w.failure(); err != nil {
		return 0, err
	}
	w.sum.Write(p)
	w.size += int64(len(p))
	n := 0
	for len(p) > 0 {
		if w.block == nil {
			select {
			case w.block = <-w.free:
			case <-w.ctx.Done():
				return n, w.failure()
			}
		}
		c := copy(w.block[len(w.block):cap(w.block)], p)
		w.block = w.block[:len(w.block)+c]
		p = p[c:]
		n += c
		if len(w.block) == cap(w.block) {
			if err := w.flushBlock(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *Writer) flushBlock() error {
	select {
	case w.blocks <- w.block:
		w.block = nil
		return nil
	case <-w.ctx.Done():
		return w.failure()
	}
}

// chunkLoop cuts the input blocks into chunks and hands them to the
// workers in order. Chunk buffers come from bufs, which holds at most
// InFlight of them; when all are in use the chunker waits for a worker to
// return one, and the input backs up to Write.
func (w *Writer) chunkLoop(bufs chan []byte) {
	defer close(w.work)
	c := chunker{gear: w.v.keys.gear, p: w.v.chunking}
	allocated := 0
	var buf, cur []byte // the chunk being cut, cur = chunkData(buf)[:n]
	seq := 0
	getBuf := func() bool {
		select {
		case buf = <-bufs:
		default:
			if allocated < w.opts.InFlight {
				allocated++
				buf = make([]byte, w.v.chunkBufSize())
				break
			}
			select {
			case buf = <-bufs:
			case <-w.ctx.Done():
				return false
			}
		}
		cur = chunkData(buf)
		return true
	}
	dispatch := func() bool {
		w.mu.Lock()
		w.refs = append(w.refs, ChunkRef{Size: int64(len(cur))})
		w.mu.Unlock()
		select {
		case w.work <- chunkJob{seq: seq, buf: buf, data: cur}:
			seq++
			buf, cur = nil, nil
			return true
		case <-w.ctx.Done():
			return false
		}
	}
	for {
		var block []byte
		var ok bool
		select {
		case block, ok = <-w.blocks:
		case <-w.ctx.Done():
			return
		}
		if !ok {
			break
		}
		data := block
		for len(data) > 0 {
			if buf == nil && !getBuf() {
				return
			}
			n, cut := c.next(data)
			cur = append(cur, data[:n]...)
			data = data[n:]
			if cut && !dispatch() {
				return
			}
		}
		w.free <- block[:0]
	}
	if len(cur) > 0 {
		dispatch()
	}
}

// workLoop stores chunks until the chunker is done or the stream fails.
func (w *Writer) workLoop(bufs chan []byte) {
	sc := w.v.newChunkScratch()
	for job := range w.work {
		if w.ctx.Err() != nil {
			continue // drain, so the chunker never blocks on us
		}
		ref, fresh, err := w.v.putChunk(w.ctx, job.buf, job.data, sc, w.opts.Compression, &w.probe, w.own, w.packer)
		bufs <- job.buf
		if err != nil {
			w.fail(err)
			continue
		}
		w.mu.Lock()
		w.refs[job.seq] = ref
		if fresh {
			w.res.NewChunks++
			w.res.NewBytes += ref.Size
			w.res.StoredBytes += ref.StoredSize
		} else {
			w.res.DedupBytes += ref.Size
		}
		w.mu.Unlock()
	}
}

// Close ends the stream: it flushes the last chunk, waits for every upload,
// and stops the Writer's goroutines. After it returns nil, [Writer.Result]
// describes the stream. Close returns the stream's first error, if any, and
// later calls return the same.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	err := w.failure()
	if err == nil && w.block != nil && len(w.block) > 0 {
		err = w.flushBlock()
	}
	close(w.blocks)
	w.wg.Wait()
	// the last pack, and the index of the packs not yet indexed
	w.packer.flush()
	if err == nil {
		err = w.failure()
	}
	w.cancel(errWriterClosed)
	if w.stopWatch != nil {
		w.stopWatch()
	}
	if w.session != nil {
		if serr := w.session.Close(w.closeCtx); err == nil && errors.Is(serr, ErrSessionExpired) {
			err = fmt.Errorf("vault writer: %w", serr)
		}
	}
	if err != nil {
		w.err = err
		return err
	}
	w.res.Chunks = w.refs
	w.res.Size = w.size
	w.res.Checksum = "blake3:" + hex.EncodeToString(w.sum.Sum(nil))
	return nil
}

// Result describes the stream written. It is valid only after Close has
// returned nil; otherwise it is the zero Result.
func (w *Writer) Result() Result {
	if !w.closed || w.err != nil {
		return Result{}
	}
	return w.res
}
