package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cofferhq/coffer/pkg/blob"
)

var _ blob.Locker = (*Store)(nil)

// locker returns the store's Locker, or an error matching
// blob.ErrUnsupported.
func (s *Store) locker() (blob.Locker, error) {
	if l, ok := s.next.(blob.Locker); ok {
		return l, nil
	}
	return nil, blob.ErrUnsupported
}

// doLocked runs op as do does; a refusal because of a retention
// (blob.ErrLocked) is an answer, not a failure.
func (s *Store) doLocked(ctx context.Context, what, key string, op func(blob.Locker) error) error {
	l, err := s.locker()
	if err != nil {
		return err
	}
	return s.do(ctx, what, key, func() error {
		err := op(l)
		if errors.Is(err, blob.ErrLocked) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// ObjectLock asks the store, trying again; a store without the capability
// gives an error matching blob.ErrUnsupported.
func (s *Store) ObjectLock(ctx context.Context) (bool, error) {
	var ok bool
	err := s.doLocked(ctx, "object lock", "", func(l blob.Locker) (err error) {
		ok, err = l.ObjectLock(ctx)
		return err
	})
	return ok, err
}

// Retain sets a retention, trying again.
func (s *Store) Retain(ctx context.Context, key string, mode blob.RetentionMode, until time.Time) error {
	return s.doLocked(ctx, "retain", key, func(l blob.Locker) error { return l.Retain(ctx, key, mode, until) })
}

// Retention reads a retention, trying again.
func (s *Store) Retention(ctx context.Context, key string) (time.Time, error) {
	var t time.Time
	err := s.doLocked(ctx, "retention", key, func(l blob.Locker) (err error) {
		t, err = l.Retention(ctx, key)
		return err
	})
	return t, err
}

// Purge deletes every version, trying again; a version still kept
// (blob.ErrLocked) is answered at once.
func (s *Store) Purge(ctx context.Context, key string) error {
	return s.doLocked(ctx, "purge", key, func(l blob.Locker) error { return l.Purge(ctx, key) })
}

// Undelete removes delete markers, trying again: what an earlier try
// removed is not hidden any more, so a later one does not see it.
func (s *Store) Undelete(ctx context.Context, prefix string) ([]string, error) {
	var all []string
	err := s.doLocked(ctx, "undelete", prefix, func(l blob.Locker) error {
		keys, err := l.Undelete(ctx, prefix)
		all = append(all, keys...)
		return err
	})
	return all, err
}
