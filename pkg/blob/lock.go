package blob

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLocked is matched, with errors.Is, by the error a [Locker] returns
// when the store refuses to delete an object version that is under
// retention (S3 Object Lock) or a legal hold: not yet, whoever asks.
var ErrLocked = errors.New("blob is under retention")

// ErrUnsupported is matched by the error of a call to an optional
// capability that the store underneath does not have (a directory store
// asked to lock an object).
var ErrUnsupported = errors.New("not supported by this store")

// RetentionMode is how strictly a retention holds: S3 Object Lock's two
// modes. In either, the store refuses to delete the object version, or to
// shorten its retention, before the date, to anyone without the right to
// bypass it; in compliance mode nobody has that right, not even the
// account's root.
type RetentionMode string

// The retention modes, spelt as S3 spells them.
const (
	Governance RetentionMode = "GOVERNANCE"
	Compliance RetentionMode = "COMPLIANCE"
)

// ParseRetentionMode reads "governance" or "compliance", in any case.
func ParseRetentionMode(s string) (RetentionMode, error) {
	switch m := RetentionMode(upper(s)); m {
	case Governance, Compliance:
		return m, nil
	}
	return "", fmt.Errorf("object lock mode %q: want governance or compliance", s)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// Locker is the optional capability of a [Store] whose objects can be kept
// from deletion by the store itself: S3 Object Lock, in a bucket that has
// it (and so keeps versions). Find it with a type assertion; a decorator
// that forwards it returns errors matching [ErrUnsupported] when the store
// it wraps has none.
//
// In a store with versions, [Store.Delete] of a locked object only hides
// it behind a delete marker; the locked version stays. Purge deletes
// versions, and is refused while one is locked.
type Locker interface {
	// ObjectLock reports whether the store can lock objects: whether its
	// bucket has Object Lock enabled.
	ObjectLock(ctx context.Context) (bool, error)

	// Retain makes the store keep the current version of the object under
	// key, in mode, until at least until. It never shortens a retention:
	// if the version is already kept until then or later, it changes
	// nothing. A missing object gives an error matching [ErrNotExist].
	Retain(ctx context.Context, key string, mode RetentionMode, until time.Time) error

	// Retention returns the date until which the current version of the
	// object under key is kept; the zero time if it has no retention. A
	// missing object gives an error matching [ErrNotExist].
	Retention(ctx context.Context, key string) (time.Time, error)

	// Purge deletes every version of the object under key, and the
	// delete markers. A version the store still keeps is left, and the
	// error matches [ErrLocked]; the others are deleted all the same.
	// Purging a key that holds nothing is not an error.
	Purge(ctx context.Context, key string) error

	// Undelete removes the delete markers that hide a version which the
	// store still keeps, for every object whose key starts with prefix,
	// so that the kept version is the current one again. It returns the
	// keys brought back, in lexical order.
	Undelete(ctx context.Context, prefix string) ([]string, error)
}
