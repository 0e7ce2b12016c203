// Package exact provides a reader that enforces a declared length, for
// backends that must refuse a Put whose reader yields more or fewer bytes
// than its size, and fail a ranged read that yields fewer bytes than asked.
package exact

import (
	"context"
	"fmt"
	"io"
)

// Reader reads exactly size bytes from r. If r ends early, Read returns
// io.ErrUnexpectedEOF; if r holds more, the Read that would deliver the last
// declared bytes returns an error instead, so a consumer that forwards bytes
// as it reads them (an HTTP upload) never sends a complete body. Reads also
// fail once ctx is done.
type Reader struct {
	ctx  context.Context
	r    io.Reader
	left int64
	size int64
}

// NewReader returns a Reader over r that must yield exactly size bytes.
func NewReader(ctx context.Context, r io.Reader, size int64) *Reader {
	return &Reader{ctx: ctx, r: r, left: size, size: size}
}

// Read implements io.Reader.
func (e *Reader) Read(p []byte) (int, error) {
	if err := e.ctx.Err(); err != nil {
		return 0, err
	}
	if e.left == 0 {
		if err := e.checkEOF(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case e.left == 0:
		// Hold back these last bytes until r is known to end here.
		if err := e.checkEOF(); err != nil {
			return 0, err
		}
		return n, nil
	case err == io.EOF:
		return n, fmt.Errorf("reader ended after %d of %d bytes: %w", e.size-e.left, e.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

// checkEOF makes sure r has nothing beyond the declared size.
func (e *Reader) checkEOF() error {
	var one [1]byte
	for range maxEmptyReads {
		n, err := e.r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("reader holds more than the declared %d bytes", e.size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// maxEmptyReads bounds how often checkEOF retries a reader that returns
// neither data nor an error, as io.ReadFull's callers do.
const maxEmptyReads = 100
