package tds

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// autoFlushSize is how much a response buffers before its complete tokens
// are sent without waiting for Flush.
const autoFlushSize = 64 << 10

var (
	errAborted  = errors.New("connection aborted by handler")
	errFinished = errors.New("request already finished")
)

// resultWriter turns ResultWriter calls into the token stream of one
// response. It only ever sends whole tokens, and holds back a trailing DONE
// so that the last one can go out without DONE_MORE. It is safe for
// concurrent use.
type resultWriter struct {
	c   *conn
	ctx context.Context

	mu          sync.Mutex
	buf         []byte
	pendingDone int // offset in buf of a trailing DONE token, or -1
	cols        []Column
	inResult    bool // the current statement has a result set
	errSeen     bool // the current statement has an ERROR token
	err         error
	finished    bool
}

func newResultWriter(c *conn, ctx context.Context) *resultWriter {
	return &resultWriter{c: c, ctx: ctx, pendingDone: -1}
}

// do runs f under the lock if the writer still takes tokens, then sends
// what is buffered once it is large.
func (w *resultWriter) do(f func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		return w.err
	case w.finished:
		return errFinished
	case w.ctx.Err() != nil:
		return fmt.Errorf("request cancelled: %w", context.Cause(w.ctx))
	}
	if err := f(); err != nil {
		return err
	}
	if n := w.sendable(); n >= autoFlushSize {
		return w.send(n, false)
	}
	return nil
}

// Columns implements ResultWriter.
func (w *resultWriter) Columns(cols []Column) error {
	return w.do(func() error {
		b, err := appendColMetadata(w.buf, cols)
		if err != nil {
			return err
		}
		w.buf, w.pendingDone = b, -1
		w.cols, w.inResult = append([]Column(nil), cols...), true
		return nil
	})
}

// Row implements ResultWriter.
func (w *resultWriter) Row(vals ...any) error {
	return w.do(func() error {
		if len(vals) != len(w.cols) || w.cols == nil {
			return fmt.Errorf("row of %d values for %d columns", len(vals), len(w.cols))
		}
		b := append(w.buf, tokRow) // w.buf keeps its length if a value fails
		for i, v := range vals {
			var err error
			if b, err = appendValue(b, w.cols[i], v); err != nil {
				return fmt.Errorf("column %q: %w", w.cols[i].Name, err)
			}
		}
		w.buf, w.pendingDone = b, -1
		return nil
	})
}

// Done implements ResultWriter.
func (w *resultWriter) Done(count int64) error {
	return w.do(func() error {
		status := doneMore
		if count >= 0 {
			status |= doneCount
		}
		w.pendingDone = len(w.buf)
		w.buf = appendDone(w.buf, status|w.statusBits(), w.curCmd(), max(count, 0))
		w.cols, w.inResult, w.errSeen = nil, false, false
		return nil
	})
}

// Message implements ResultWriter.
func (w *resultWriter) Message(e *Error) error {
	return w.do(func() error {
		w.errSeen = w.errSeen || e.Severity > 10
		w.buf, w.pendingDone = appendMessage(w.buf, e, w.c.srv.cfg.ServerName), -1
		return nil
	})
}

// Flush implements ResultWriter: all but a trailing DONE is sent in packets
// without EOM.
func (w *resultWriter) Flush() error {
	return w.do(func() error { return w.send(w.sendable(), false) })
}

// Abort implements ResultWriter.
func (w *resultWriter) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = errAborted
	}
	w.c.close()
}

func (w *resultWriter) statusBits() uint16 {
	if w.errSeen {
		return doneError
	}
	return 0
}

func (w *resultWriter) curCmd() uint16 {
	if w.inResult {
		return curCmdSelect
	}
	return 0
}

// sendable is how many leading bytes of buf may go out before the end of
// the response.
func (w *resultWriter) sendable() int {
	if w.pendingDone >= 0 {
		return w.pendingDone
	}
	return len(w.buf)
}

// send writes the first n bytes of buf and drops them from it.
func (w *resultWriter) send(n int, eom bool) error {
	if n == 0 && !eom {
		return nil
	}
	if err := w.c.write(pktReply, w.buf[:n], eom); err != nil {
		w.err = err
		return err
	}
	w.buf = append(w.buf[:0], w.buf[n:]...)
	if w.pendingDone >= 0 {
		w.pendingDone -= n
	}
	return nil
}

// finish ends the response after the handler returned. After an attention
// the unsent tokens are dropped and a DONE with DONE_ATTN ends it.
func (w *resultWriter) finish(attn bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
	switch {
	case w.err != nil:
		return w.err
	case attn:
		w.buf = appendDone(w.buf[:0], doneAttn, 0, 0)
	case w.pendingDone >= 0:
		w.buf[w.pendingDone+1] &^= byte(doneMore)
	default:
		w.buf = appendDone(w.buf, w.statusBits(), w.curCmd(), 0)
	}
	return w.send(len(w.buf), true)
}
