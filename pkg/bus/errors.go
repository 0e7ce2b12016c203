package bus

import (
	"errors"
)

var (
	// ErrNoStream is returned by Publish when no stream captures the subject
	// (NATS reported no responders), usually because EnsureStream has not
	// run for it. The message was not stored.
	ErrNoStream = errors.New("no stream captures subject")

	// ErrNoResponder is returned by Request when nothing serves the
	// subject now (NATS reported no responders): the service that answers
	// it is not running.
	ErrNoResponder = errors.New("no responder serves subject")

	// ErrMalformed marks a message that can never be decoded: its payload is
	// not the protobuf it claims to be, or its type header names another
	// message. A handler returning an error that wraps ErrMalformed gets the
	// message terminated, like [Permanent].
	ErrMalformed = errors.New("malformed message")
)

// Permanent marks err as one that redelivery cannot fix: the consumer
// terminates the message and calls Config.OnPoison instead of naking it.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with [Permanent] or wraps
// [ErrMalformed].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || errors.Is(err, ErrMalformed)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
