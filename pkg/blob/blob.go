package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrNotExist is matched, with errors.Is, by the error a Store returns for a
// key that holds no object.
var ErrNotExist = errors.New("blob does not exist")

// ErrInvalidKey is matched, with errors.Is, by the error a Store returns for
// a key that [ValidateKey] refuses. No backend touches storage for such a key.
var ErrInvalidKey = errors.New("invalid blob key")

// ErrRange is matched, with errors.Is, by the error GetRange returns for a
// range that does not lie within the object: one that starts or ends past
// its end, or has a negative offset or length.
var ErrRange = errors.New("blob range not satisfiable")

// MaxKeyLen is the longest key, in bytes, a Store accepts. S3 allows 1024
// bytes per object name and a backend may add a prefix of its own.
const MaxKeyLen = 512

// Info describes a stored object.
type Info struct {
	// Key is the object's key, as given to Put.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// ModTime is when the object was last written, as the backend records it
	// (to the backend's precision, on the backend's clock).
	ModTime time.Time
}

// Store is a flat namespace of objects addressed by keys.
//
// Keys are slash-separated paths such as "chunks/ab/abcdef"; [ValidateKey]
// states which are allowed, and every method returns an error matching
// [ErrInvalidKey] for any other. A backend may refuse to store a key that is
// also a leading path of another stored key ("a" beside "a/b"); callers must
// not rely on such pairs.
//
// A Store is safe for concurrent use. Every method honours ctx: once ctx is
// done, calls fail with an error matching ctx.Err(), and a Put in progress
// stores nothing.
type Store interface {
	// Put stores exactly size bytes read from r under key, replacing any
	// object already there. Put is atomic: a concurrent or later Get sees
	// either the previous object or the complete new one, never a part, and
	// a Put that fails (r returns an error, yields fewer or more than size
	// bytes, or ctx ends) leaves the previous object, or no object, in place.
	// When Put returns nil the object is durable as far as the backend can
	// promise it.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Get opens the object under key for reading. If there is none, the
	// error matches [ErrNotExist]. The caller must close the reader. Reads
	// fail with an error, rather than returning fewer bytes, if the object
	// cannot be read to its end.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// GetRange opens length bytes of the object under key, starting at
	// offset off, for reading. If there is none, the error matches
	// [ErrNotExist]. The range must lie within the object, 0 <= off and
	// 0 <= length and off+length <= size; for any other the error matches
	// [ErrRange], never a shorter reader. A negative off or length is
	// refused before storage is touched, whether the object exists or not.
	// A length of 0 with off <= size is a valid, empty range: GetRange
	// still reports a missing object or an off past the end. The bytes all
	// come from one version of the object, even if it is replaced while
	// they are read. The caller must close the reader. Reads fail with an
	// error, rather than returning fewer bytes, if the range cannot be read
	// to its end, and fail once ctx is done.
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Stat describes the object under key. If there is none, the error
	// matches [ErrNotExist].
	Stat(ctx context.Context, key string) (Info, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexical (bytewise) order of keys. The prefix is a plain string prefix:
	// "a/b" matches "a/b/c" and "a/bc". A prefix that [ValidatePrefix]
	// refuses gives an error matching [ErrInvalidKey]. Objects whose names are not valid
	// keys (temporary files, objects written by other tools) are not listed.
	// If fn returns an error List stops and returns that error. Objects put
	// or deleted while List runs may or may not be seen.
	List(ctx context.Context, prefix string, fn func(Info) error) error

	// Delete removes the object under key. Deleting a key that holds no
	// object is not an error.
	Delete(ctx context.Context, key string) error
}

// CheckRange returns an error matching [ErrRange] for a range no object
// holds: a negative offset or length, or an end past the largest int64.
// Stores check it in GetRange before touching storage.
func CheckRange(off, length int64) error {
	if off < 0 || length < 0 || off > math.MaxInt64-length {
		return ErrRange
	}
	return nil
}

// ValidateKey reports whether key is one a Store accepts, returning an error
// matching [ErrInvalidKey] if not. A key is valid UTF-8, at most [MaxKeyLen]
// bytes, made of one or more segments separated by single slashes; no
// segment is empty or starts with a dot (which rules out "." and "..", and
// keeps names free for a backend's temporary files), and no character is a
// backslash or a control character. So a key can never name anything outside
// the store, on any backend.
func ValidateKey(key string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("%w: key %q: %s", ErrInvalidKey, truncate(key), err)
	}
	return nil
}

// ValidatePrefix reports whether some valid key could start with prefix,
// returning an error matching [ErrInvalidKey] if none could. The empty
// prefix and any valid key are valid prefixes, and so is a valid key
// followed by a slash.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := validate(prefix, true); err != nil {
		return fmt.Errorf("%w: prefix %q: %s", ErrInvalidKey, truncate(prefix), err)
	}
	return nil
}

func validateKey(key string) error {
	if key == "" {
		return errors.New("empty")
	}
	return validate(key, false)
}

// validate checks s as a key or, if prefix is set, as the start of one,
// whose last segment may be empty.
func validate(s string, prefix bool) error {
	switch {
	case len(s) > MaxKeyLen:
		return fmt.Errorf("longer than %d bytes", MaxKeyLen)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r == '\\' || unicode.IsControl(r) {
			return fmt.Errorf("contains character %U", r)
		}
	}
	rest := s
	for {
		seg, after, more := strings.Cut(rest, "/")
		switch {
		case seg == "" && (more || !prefix):
			return errors.New("empty path segment")
		case seg != "" && seg[0] == '.':
			return errors.New("path segment starts with a dot")
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// truncate shortens a hostile key for an error message.
func truncate(key string) string {
	const max = 80
	if len(key) <= max {
		return key
	}
	return key[:max] + "..."
}
