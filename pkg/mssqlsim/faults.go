package mssqlsim

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FaultKind names a failure a test can inject into the next BACKUP or
// RESTORE stream.
type FaultKind int

// Faults.
const (
	// FaultDropConnection drops the client connection in the middle of a
	// backup, as a server that dies or a network that fails would.
	FaultDropConnection FaultKind = iota + 1
	// FaultStall stops the stream until the request is cancelled or the
	// fault is removed.
	FaultStall
	// FaultUploadFailure fails the next part upload of a BACKUP TO URL.
	FaultUploadFailure
	// FaultDiskFull fails a BACKUP TO DISK with "not enough space".
	FaultDiskFull
)

// Fault is one injected failure. It fires once, when a backup of Database
// (any database when empty) has written AfterBytes bytes.
type Fault struct {
	Kind       FaultKind
	Database   string
	AfterBytes int64

	fired   bool
	release chan struct{}
}

// InjectFault arms a fault; remove disarms it (and releases a stall).
func (i *Instance) InjectFault(f Fault) (remove func()) {
	fp := &f
	fp.release = make(chan struct{})
	i.mu.Lock()
	i.faults = append(i.faults, fp)
	i.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(fp.release)
			i.mu.Lock()
			defer i.mu.Unlock()
			for k, g := range i.faults {
				if g == fp {
					i.faults = append(i.faults[:k], i.faults[k+1:]...)
					break
				}
			}
		})
	}
}

// armedFaults returns the faults that apply to a backup of db; they are
// claimed so that each fires once.
func (i *Instance) armedFaults(db string) []*Fault {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []*Fault
	for _, f := range i.faults {
		if !f.fired && (f.Database == "" || i.sameName(f.Database, db)) {
			f.fired = true
			out = append(out, f)
		}
	}
	return out
}

var (
	errDiskFull       = syscall.ENOSPC
	errUploadRefused  = errors.New("the upload of a part was refused (injected fault)")
	errConnectionDrop = errors.New("the connection was dropped (injected fault)")
)

// faultWriter applies faults to the bytes of one backup stream, and
// paces it at rate bytes a second (Config.BackupRate) when rate is
// positive.
type faultWriter struct {
	ctx    context.Context
	w      io.Writer
	n      int64
	faults []*Fault
	abort  func() // drops the client connection
	upload bool   // the stream goes to URL
	rate   float64
	start  time.Time
	// stalled counts the streams a FaultStall holds now (Stats.Stalled)
	stalled *atomic.Int64
}

func (fw *faultWriter) Write(p []byte) (int, error) {
	for _, f := range fw.faults {
		if f.fired && fw.n+int64(len(p)) >= f.AfterBytes && f.release != nil {
			switch f.Kind {
			case FaultDropConnection:
				if fw.abort != nil {
					fw.abort()
				}
				return 0, errConnectionDrop
			case FaultStall:
				if fw.stalled != nil {
					fw.stalled.Add(1)
				}
				var err error
				select {
				case <-fw.ctx.Done():
					err = fw.ctx.Err()
				case <-f.release:
				}
				if fw.stalled != nil {
					fw.stalled.Add(-1)
				}
				if err != nil {
					return 0, err
				}
			case FaultDiskFull:
				if !fw.upload {
					return 0, errDiskFull
				}
			case FaultUploadFailure:
				if fw.upload {
					return 0, errUploadRefused
				}
			}
		}
	}
	n, err := fw.w.Write(p)
	fw.n += int64(n)
	if err == nil && fw.rate > 0 {
		// the stream may not run ahead of rate: wait until it is due
		due := fw.start.Add(time.Duration(float64(fw.n) / fw.rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-fw.ctx.Done():
				return n, fw.ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	return n, err
}
