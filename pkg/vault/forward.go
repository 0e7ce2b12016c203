package vault

import (
	"io"
	"sort"
	"sync"
	"time"
)

// forward serves a ReaderAt's reads that go on where earlier ones ended
// from one sequential reader of the stream (NewReader's: long ranged GETs
// of up to maxGroup chunks, chunks kept sealed until they are near), as a
// restore from URL reads a backup: forward, in ranges of MAXTRANSFERSIZE,
// a few in flight, each read in pieces by its own request. The range after
// the one being read waits for it, so the ranges take their turns on one
// reader instead of each fetching and caching its own chunks: in
// BenchmarkBackup1GiB/url, 218 GETs for the cache became about as few as
// a disk-mode restore makes.
//
// A read the reader cannot serve (behind it, far ahead, or while another
// read uses it) goes to the cache as before. When the reader is idle, a
// read elsewhere moves it: SQL Server reads a backup's head and tail
// before its body.
type forward struct {
	mu      sync.Mutex
	r       io.ReadCloser // reading from pos; nil when none is open
	pos     int64
	busy    bool      // a read is using r
	stopped bool      // failed, trimmed or closed: reads go to the cache
	moved   time.Time // when a read last took or gave back r
	// opened is where r was opened; moves counts the times it was opened
	// in a row without reading much from it
	opened int64
	moves  int
	// streak: a read took r where the one before it left it, as the
	// pieces of a range read in order do
	streak  bool
	changed chan struct{}
}

const (
	// forwardWindow is how far ahead of the reader a read waits for it:
	// the ranges SQL Server keeps in flight, with room.
	forwardWindow = 64 << 20
	// forwardIdle is how long the reader may go unused, while reads go
	// on where others ended, before a read waiting for it gives up and
	// moves it; forwardGrace is that time after the reader was moved,
	// before any read went on from it: reads at random wait no longer.
	forwardIdle  = 100 * time.Millisecond
	forwardGrace = 5 * time.Millisecond
	// forwardMoves bounds how many times in a row reads may move the
	// reader, each time reading less than forwardUseful from it: each
	// move costs a ranged GET of a group, and a ReaderAt read at random
	// is better served by the cache alone.
	forwardMoves  = 8
	forwardUseful = 1 << 20
)

func newForward() *forward { return &forward{changed: make(chan struct{})} }

// signalLocked wakes the reads waiting for the reader.
func (f *forward) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// readForward reads p at off, off < size, from the sequential reader, and
// reports whether it did; if not, the caller reads from the cache. A read
// that fails is not an error here: the cache reads it again, and names the
// chunk at fault.
func (r *ReaderAt) readForward(p []byte, off, size int64) (int, bool) {
	f := r.fwd
	f.mu.Lock()
	for {
		if f.stopped {
			f.mu.Unlock()
			return 0, false
		}
		if !f.busy && off == f.pos && f.r != nil {
			f.streak = f.streak || f.pos > f.opened
			break
		}
		exhausted := f.moves >= forwardMoves && f.pos-f.opened < forwardUseful
		grace := forwardGrace
		if f.streak {
			grace = forwardIdle
		}
		idle := time.Since(f.moved)
		waiting := !exhausted && off > f.pos && off-f.pos <= forwardWindow && (f.busy || idle < grace)
		if !waiting {
			if f.busy || exhausted {
				f.mu.Unlock()
				return 0, false
			}
			f.moveLocked(r, off)
			break
		}
		wait := grace - idle
		if f.busy {
			wait = forwardIdle
		}
		changed := f.changed
		f.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return 0, false
		}
		t.Stop()
		f.mu.Lock()
	}
	f.busy = true
	rd := f.r
	f.mu.Unlock()

	n := int(min(int64(len(p)), size-off))
	got, err := io.ReadFull(rd, p[:n])

	f.mu.Lock()
	defer f.mu.Unlock()
	f.busy = false
	f.moved = time.Now()
	f.pos += int64(got)
	if err != nil || f.stopped || f.pos == size {
		rd.Close()
		f.r = nil
	}
	if err != nil {
		f.stopped = true
	}
	f.signalLocked()
	return got, err == nil
}

// moveLocked opens the sequential reader at off, closing the one open.
func (f *forward) moveLocked(r *ReaderAt, off int64) {
	if f.r != nil {
		f.r.Close()
	}
	if f.pos-f.opened >= forwardUseful {
		f.moves = 0
	}
	f.moves++
	i := sort.Search(len(r.chunks), func(i int) bool { return r.offs[i+1] > off })
	f.r = &skipReader{r: r.v.NewReader(r.ctx, r.chunks[i:]), skip: off - r.offs[i]}
	f.pos, f.opened = off, off
	f.streak = false
}

// trim closes the sequential reader unless a read is using it; a later
// read opens it again. With stop, every later read goes to the cache.
func (f *forward) trim(stop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = f.stopped || stop
	if f.r != nil && !f.busy {
		f.r.Close()
		f.r = nil
	}
	f.signalLocked()
}

// skipReader drops skip bytes of r before its first read.
type skipReader struct {
	r    io.ReadCloser
	skip int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.skip > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.skip); err != nil {
			return 0, err
		}
		s.skip = 0
	}
	return s.r.Read(p)
}

func (s *skipReader) Close() error { return s.r.Close() }
