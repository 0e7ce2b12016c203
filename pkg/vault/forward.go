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
// a few in flight, each read in pieces by its own request. The ranges
// take their turns on the one reader, instead of each fetching and caching
// its own chunks: a section (see [ReaderAt.Section]) that starts a little
// ahead of another open section waits for it to get there.
//
// A read the reader cannot serve (behind it, far ahead, or while another
// read uses it) goes to the cache. The first of the open sections moves
// the reader to where it reads, as does any read when no section is about
// to go on from where the reader is: SQL Server reads a backup's head and
// tail before its body.
type forward struct {
	mu       sync.Mutex
	r        io.ReadCloser // reading from pos; nil when none is open
	pos      int64
	busy     bool      // a read is using r
	stopped  bool      // closed: reads go to the cache
	progress time.Time // when a read last ended, or a section opened or closed
	// opened is where r was opened; moves counts the times it was opened
	// in a row without reading forwardUseful from it
	opened   int64
	moves    int
	sections map[*section]struct{} // open
	changed  chan struct{}
}

// section is an open [ReaderAt.Section].
type section struct {
	r         *ReaderAt
	next, end int64 // next is where its next read starts
}

const (
	// forwardWindow is how far ahead of another open section a section
	// waits for it: the ranges SQL Server keeps in flight, with room.
	forwardWindow = 64 << 20
	// forwardIdle is how long reads must have stopped before a read may
	// move the reader while a section is about to go on from it;
	// forwardStall how long a section waits for sections before it that
	// read nothing.
	forwardIdle  = 100 * time.Millisecond
	forwardStall = 2 * time.Second
	// forwardMoves bounds how many times in a row reads may move the
	// reader, each time reading less than forwardUseful from it: each
	// move costs a ranged GET of a group, and reads at random are better
	// served by the cache alone.
	forwardMoves  = 8
	forwardUseful = 1 << 20
	// forwardLong: a section with less than this left to read moves the
	// reader (losing what it has fetched ahead) only if another open
	// section starts where it ends: ranges in flight one after the
	// other, not a backup's head and tail, which SQL Server reads before
	// its body, and again for each RESTORE HEADERONLY or FILELISTONLY.
	forwardLong = 4 << 20
)

func newForward() *forward {
	return &forward{sections: make(map[*section]struct{}), changed: make(chan struct{})}
}

// signalLocked wakes the reads waiting for the reader.
func (f *forward) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// headingLocked reports whether a read is using the reader, or an open
// section other than s is about to go on from where it is.
func (f *forward) headingLocked(s *section) bool {
	if f.busy {
		return true
	}
	for t := range f.sections {
		if t != s && t.next == f.pos && t.next < t.end {
			return true
		}
	}
	return false
}

// behindLocked reports whether an open section other than s has yet to
// read up to where s reads next, and is less than forwardWindow before it:
// s then waits its turn.
func (f *forward) behindLocked(s *section) bool {
	for t := range f.sections {
		if t != s && t.next < t.end && t.next < s.next && s.next-t.next <= forwardWindow {
			return true
		}
	}
	return false
}

// followedLocked reports whether an open section starts where s ends.
func (f *forward) followedLocked(s *section) bool {
	for t := range f.sections {
		if t != s && t.next == s.end {
			return true
		}
	}
	return false
}

// readForward reads p at off, off < size, from the sequential reader, for
// section s (nil for a plain ReadAt), and reports whether it did; if not,
// the caller reads from the cache. A read that fails is not an error here:
// the cache reads it again, and names the chunk at fault.
func (r *ReaderAt) readForward(p []byte, off, size int64, s *section) (int, bool) {
	f := r.fwd
	f.mu.Lock()
	for {
		if f.stopped {
			f.mu.Unlock()
			return 0, false
		}
		if !f.busy && off == f.pos && f.r != nil {
			break
		}
		if s != nil && f.behindLocked(s) && time.Since(f.progress) < forwardStall {
			changed := f.changed
			f.mu.Unlock()
			t := time.NewTimer(forwardStall)
			select {
			case <-changed:
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return 0, false
			}
			t.Stop()
			f.mu.Lock()
			continue
		}
		exhausted := f.moves >= forwardMoves && f.pos-f.opened < forwardUseful
		short := s != nil && s.end-off < forwardLong && !f.followedLocked(s)
		if f.busy || exhausted || short || f.headingLocked(s) && time.Since(f.progress) < forwardIdle {
			f.mu.Unlock()
			return 0, false
		}
		f.moveLocked(r, off)
		break
	}
	f.busy = true
	rd := f.r
	f.mu.Unlock()

	n := int(min(int64(len(p)), size-off))
	got, err := io.ReadFull(rd, p[:n])

	f.mu.Lock()
	defer f.mu.Unlock()
	f.busy = false
	f.progress = time.Now()
	f.pos += int64(got)
	if s != nil && err == nil {
		s.next = off + int64(got)
	}
	if err != nil || f.stopped || f.pos == size {
		rd.Close()
		f.r = nil
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
	f.progress = time.Now()
}

// trim closes the sequential reader unless a read is using it (which then
// closes it); a later read opens it again, unless stop.
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

// Section returns a reader of the n bytes of the stream from off (fewer if
// the stream ends first), for a caller that reads them in order, such as
// a server answering a ranged GET. With [ReaderAtOptions.Forward], while
// it is open, the sections that start a little after where it reads next
// wait for it to get there, and go on from the same sequential reader.
// The caller must Close it.
func (r *ReaderAt) Section(off, n int64) io.ReadCloser {
	s := &section{r: r, next: off, end: off + max(n, 0)}
	if r.fwd != nil {
		r.fwd.mu.Lock()
		r.fwd.sections[s] = struct{}{}
		r.fwd.progress = time.Now()
		r.fwd.signalLocked()
		r.fwd.mu.Unlock()
	}
	return s
}

func (s *section) Read(p []byte) (int, error) {
	if s.next >= s.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.end-s.next)]
	off := s.next
	n, err := s.r.readAt(p, off, s)
	if s.r.fwd != nil {
		// as readForward does, under the lock, when it serves the read
		s.r.fwd.mu.Lock()
		s.next = off + int64(n)
		s.r.fwd.progress = time.Now()
		s.r.fwd.signalLocked()
		s.r.fwd.mu.Unlock()
	} else {
		s.next = off + int64(n)
	}
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (s *section) Close() error {
	if s.r.fwd != nil {
		s.r.fwd.mu.Lock()
		delete(s.r.fwd.sections, s)
		s.r.fwd.progress = time.Now()
		s.r.fwd.signalLocked()
		s.r.fwd.mu.Unlock()
	}
	return nil
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
