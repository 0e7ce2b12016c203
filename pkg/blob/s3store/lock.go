package s3store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob"
)

var _ blob.Locker = (*Store)(nil)

// MakeBucket creates the store's bucket, with Object Lock enabled if
// objectLock is set (which also turns versioning on, for good). A bucket
// that exists already is used as it is, but with objectLock it must have
// Object Lock enabled: a bucket cannot be given it afterwards on every
// S3 store, so the error says to make a new one.
func (s *Store) MakeBucket(ctx context.Context, objectLock bool) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", s.bucket, err)
	}
	if !ok {
		err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{ObjectLocking: objectLock})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("make bucket %s: %w", s.bucket, err)
		}
	}
	if !objectLock {
		return nil
	}
	locked, err := s.ObjectLock(ctx)
	if err != nil {
		return err
	}
	if !locked {
		return fmt.Errorf("bucket %s exists without Object Lock; an immutable vault needs a bucket created with it (make a new bucket, or let coffer make one)", s.bucket)
	}
	return nil
}

// ObjectLock implements [blob.Locker].
func (s *Store) ObjectLock(ctx context.Context) (bool, error) {
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.bucket)
	if code := minio.ToErrorResponse(err).Code; code == "ObjectLockConfigurationNotFoundError" || code == "NoSuchObjectLockConfiguration" {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("object lock of bucket %s: %w", s.bucket, err)
	}
	return enabled == "Enabled", nil
}

// Retain implements [blob.Locker]. It reads the retention first, so that
// an object already kept long enough costs no change, and reads it again
// if the store refuses the change: another process may have extended it
// meanwhile, and a store refuses to shorten a retention.
func (s *Store) Retain(ctx context.Context, key string, mode blob.RetentionMode, until time.Time) error {
	if err := s.retain(ctx, key, mode, until); err != nil {
		return fmt.Errorf("retain %s until %s: %w", key, until.UTC().Format(time.RFC3339), err)
	}
	return nil
}

func (s *Store) retain(ctx context.Context, key string, mode blob.RetentionMode, until time.Time) error {
	if mode != blob.Governance && mode != blob.Compliance {
		return fmt.Errorf("unknown retention mode %q", mode)
	}
	name, err := s.object(key)
	if err != nil {
		return err
	}
	// S3 keeps retention dates to the second: round up, never down
	until = until.UTC().Truncate(time.Second).Add(time.Second)
	cur, err := s.retention(ctx, name, "")
	if err != nil {
		return err
	}
	if !cur.Before(until) {
		return nil
	}
	m := minio.RetentionMode(mode)
	err = s.client.PutObjectRetention(ctx, s.bucket, name, minio.PutObjectRetentionOptions{Mode: &m, RetainUntilDate: &until})
	if err == nil {
		return nil
	}
	if isNoSuchKey(err) {
		return blob.ErrNotExist
	}
	if cur, rerr := s.retention(ctx, name, ""); rerr == nil && !cur.Before(until) {
		return nil // extended by another meanwhile
	}
	return err
}

// Retention implements [blob.Locker].
func (s *Store) Retention(ctx context.Context, key string) (time.Time, error) {
	name, err := s.object(key)
	if err == nil {
		var t time.Time
		if t, err = s.retention(ctx, name, ""); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("retention of %s: %w", key, err)
}

// retention returns the retain-until date of a version of the object
// name ("" for the current one), zero if it has none.
func (s *Store) retention(ctx context.Context, name, version string) (time.Time, error) {
	_, until, err := s.client.GetObjectRetention(ctx, s.bucket, name, version)
	switch code := minio.ToErrorResponse(err).Code; {
	case err == nil && until != nil:
		return *until, nil
	case err == nil, code == "NoSuchObjectLockConfiguration", code == "ObjectLockConfigurationNotFoundError":
		return time.Time{}, nil
	case isNoSuchKey(err), code == "NoSuchVersion", code == "MethodNotAllowed":
		// MethodNotAllowed: the current version is a delete marker
		return time.Time{}, blob.ErrNotExist
	}
	return time.Time{}, err
}

// versions lists the versions and delete markers of the objects whose
// names start with prefix (with the store's own prefix), newest first for
// each name.
func (s *Store) versions(ctx context.Context, prefix string, fn func(minio.ObjectInfo) error) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range s.client.ListObjectsIter(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithVersions: true}) {
		if oi.Err != nil {
			return oi.Err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Purge implements [blob.Locker].
func (s *Store) Purge(ctx context.Context, key string) error {
	if err := s.purge(ctx, key); err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}

func (s *Store) purge(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	var ids []string
	err = s.versions(ctx, name, func(oi minio.ObjectInfo) error {
		if oi.Key == name {
			ids = append(ids, oi.VersionID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var locked []string
	for _, id := range ids {
		err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{VersionID: id})
		if err == nil || isNoSuchKey(err) || minio.ToErrorResponse(err).Code == "NoSuchVersion" {
			continue
		}
		if s.kept(ctx, name, id) {
			locked = append(locked, id)
			continue
		}
		return err
	}
	if len(locked) > 0 {
		return fmt.Errorf("%w: the store keeps version %s", blob.ErrLocked, strings.Join(locked, ", "))
	}
	return nil
}

// kept reports whether the store keeps a version of the object name
// because of a retention or a legal hold: then a refused delete means
// "not yet". A retention whose date has passed by this machine's clock
// counts too: the store's clock decides, and may be behind.
func (s *Store) kept(ctx context.Context, name, version string) bool {
	if until, err := s.retention(ctx, name, version); err == nil && !until.IsZero() {
		return true
	}
	hold, err := s.client.GetObjectLegalHold(ctx, s.bucket, name, minio.GetObjectLegalHoldOptions{VersionID: version})
	return err == nil && hold != nil && *hold == minio.LegalHoldEnabled
}

// Undelete implements [blob.Locker].
func (s *Store) Undelete(ctx context.Context, prefix string) ([]string, error) {
	keys, err := s.undelete(ctx, prefix)
	if err != nil {
		return keys, fmt.Errorf("undelete %q: %w", prefix, err)
	}
	return keys, nil
}

func (s *Store) undelete(ctx context.Context, prefix string) ([]string, error) {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	// for each name: the delete markers above its newest version
	type hidden struct {
		markers []string
		version string // the newest version under them
	}
	var names []string
	byName := map[string]*hidden{}
	err := s.versions(ctx, s.prefix+prefix, func(oi minio.ObjectInfo) error {
		key, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || blob.ValidateKey(key) != nil {
			return nil // not ours
		}
		h := byName[oi.Key]
		if h == nil {
			if !oi.IsLatest || !oi.IsDeleteMarker {
				byName[oi.Key] = &hidden{version: "-"} // not hidden
				return nil
			}
			h = &hidden{}
			byName[oi.Key] = h
			names = append(names, oi.Key)
		}
		switch {
		case h.version != "":
		case oi.IsDeleteMarker:
			h.markers = append(h.markers, oi.VersionID)
		default:
			h.version = oi.VersionID
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var back []string
	for _, name := range names {
		h := byName[name]
		if h.version == "" || !s.kept(ctx, name, h.version) {
			continue // deleted for good, or no longer kept: let it be
		}
		for _, m := range h.markers {
			err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{VersionID: m})
			if err != nil && !isNoSuchKey(err) && minio.ToErrorResponse(err).Code != "NoSuchVersion" {
				return back, fmt.Errorf("remove delete marker of %s: %w", name, err)
			}
		}
		back = append(back, strings.TrimPrefix(name, s.prefix))
	}
	slices.Sort(back)
	return back, nil
}
