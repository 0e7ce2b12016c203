package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Immutability (vault format 3). In a store with S3 Object Lock
// ([blob.Locker]), every object a recovery point needs to be read is
// locked by the store itself until the recovery point expires, so that
// nobody, coffer's own credentials included, can delete it before:
//
//   - its manifest, until its expiry ([Vault.RetainManifest]);
//   - every pack (or format 1 chunk) holding one of its chunks, until the
//     latest expiry of the recovery points that use it: a new recovery
//     point that reuses a chunk extends its pack's lock, and a lock is
//     never shortened;
//   - the key records and the config, until lockMargin past the latest
//     expiry seen, since without them nothing can be read.
//
// Index objects are not locked: collections replace them, and each pack
// describes itself in its sealed header, so [Vault.Recover] can list
// again any pack no index lists. Sessions, drafts and condemned
// generations are not locked either: none is needed to read a recovery
// point.
//
// The store keeps versions: a plain delete of a locked object only hides
// it behind a delete marker. Every delete of a locked vault deletes all
// versions instead ([blob.Locker.Purge]), and one the store refuses,
// because a version is still locked, matches [blob.ErrLocked]: garbage
// collection leaves such an object for a later collection (it stays
// condemned, or unlisted, so it is not forgotten), and the committer a
// recovery point whose lock has not passed for a later sweep.
// [Vault.Recover] removes the delete markers others left over locked
// objects.

// lockMargin is how far past the latest expiry it has seen a vault locks
// its key records and config, so that it need not extend their locks at
// every commit.
const lockMargin = 30 * 24 * time.Hour

// lockRecheck is how long a process trusts what it knows of an object's
// lock before it asks the store again: another process may have written
// a new version of a key record, which has no lock yet.
const lockRecheck = time.Hour

// objectLock is a locked vault's view of its store's Object Lock.
type objectLock struct {
	mode   blob.RetentionMode
	locker blob.Locker

	mu sync.Mutex
	// known is, by object key, the date it is known to be locked until,
	// and when that was learnt
	known map[string]lockKnown
	// vaultUntil is the date the key records and config were locked
	// until, at vaultAt
	vaultUntil, vaultAt time.Time
}

type lockKnown struct {
	until, at time.Time
}

// maxLockKnown bounds objectLock.known; past it, it starts over.
const maxLockKnown = 1 << 20

// checkLockConfig checks what cfg says of Object Lock against the store.
func checkLockConfig(ctx context.Context, store blob.Store, cfg vaultConfig) error {
	if cfg.Format != formatLocked {
		if cfg.ObjectLock != "" {
			return fmt.Errorf("%w: config: format %d with an object lock", ErrCorrupt, cfg.Format)
		}
		return nil
	}
	if _, err := blob.ParseRetentionMode(string(cfg.ObjectLock)); err != nil {
		return fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	return checkLockable(ctx, store)
}

// checkLockable returns an error unless store can lock objects.
func checkLockable(ctx context.Context, store blob.Store) error {
	l, ok := store.(blob.Locker)
	if !ok {
		return fmt.Errorf("the vault is immutable (Object Lock), but its store cannot lock objects: %w", blob.ErrUnsupported)
	}
	enabled, err := l.ObjectLock(ctx)
	if err != nil {
		return fmt.Errorf("the vault is immutable (Object Lock): %w", err)
	}
	if !enabled {
		return errors.New("the vault is immutable (Object Lock), but its bucket does not have Object Lock enabled")
	}
	return nil
}

// EnableObjectLock makes the vault in store immutable: from now on, the
// objects every recovery point needs are locked in mode until it expires
// (see lock.go). The store must be a [blob.Locker] whose bucket has
// Object Lock enabled. Recovery points committed before are locked when
// [Vault.RetainManifest] is called for them. Enabling the mode a vault
// already has changes nothing; another mode is refused, since a coffer
// that weakened compliance to governance would defeat it. Vaults opened
// before do not know: open them again.
func EnableObjectLock(ctx context.Context, store blob.Store, mode blob.RetentionMode) error {
	if err := enableObjectLock(ctx, store, mode); err != nil {
		return fmt.Errorf("enable object lock: %w", err)
	}
	return nil
}

func enableObjectLock(ctx context.Context, store blob.Store, mode blob.RetentionMode) error {
	if _, err := blob.ParseRetentionMode(string(mode)); err != nil {
		return err
	}
	if err := checkLockable(ctx, store); err != nil {
		return err
	}
	var initialized bool
	err := store.List(ctx, keysPrefix, func(blob.Info) error {
		initialized = true
		return errStopList
	})
	if err != nil && !errors.Is(err, errStopList) {
		return fmt.Errorf("list keys: %w", err)
	}
	if !initialized {
		return ErrNotInitialized
	}
	cfg, err := loadConfig(ctx, store)
	if err != nil {
		return err
	}
	switch cfg.ObjectLock {
	case mode:
		return nil
	case "":
	default:
		return fmt.Errorf("the vault is already immutable in %s mode", cfg.ObjectLock)
	}
	cfg.Format, cfg.ObjectLock = formatLocked, mode
	if err := putConfig(ctx, store, cfg); err != nil {
		return err
	}
	l := &objectLock{mode: mode, locker: store.(blob.Locker), known: map[string]lockKnown{}}
	return l.retainVaultObjects(ctx, store, time.Now())
}

// newObjectLock returns the objectLock of a vault whose config says mode,
// in store, which checkLockConfig found can lock.
func newObjectLock(store blob.Store, mode blob.RetentionMode) (*objectLock, error) {
	l, ok := store.(blob.Locker)
	if !ok {
		return nil, blob.ErrUnsupported
	}
	return &objectLock{mode: mode, locker: l, known: map[string]lockKnown{}}, nil
}

// purging is a locked vault's store: its Delete deletes every version,
// and fails with blob.ErrLocked while one is locked.
type purging struct {
	blob.Store
	l blob.Locker
}

func (p purging) Delete(ctx context.Context, key string) error { return p.l.Purge(ctx, key) }

// ObjectLock returns the retention mode the vault locks recovery points
// in, or "" if it is not immutable.
func (v *Vault) ObjectLock() blob.RetentionMode {
	if v.lock == nil {
		return ""
	}
	return v.lock.mode
}

// retain locks the object under key until at least until, unless this
// process knows it is already.
func (l *objectLock) retain(ctx context.Context, key string, until time.Time) error {
	now := time.Now()
	l.mu.Lock()
	k, ok := l.known[key]
	l.mu.Unlock()
	if ok && !k.until.Before(until) && now.Sub(k.at) < lockRecheck {
		return nil
	}
	if err := l.locker.Retain(ctx, key, l.mode, until); err != nil {
		return err
	}
	l.mu.Lock()
	if len(l.known) >= maxLockKnown {
		clear(l.known)
	}
	l.known[key] = lockKnown{until: until, at: now}
	l.mu.Unlock()
	return nil
}

// retainVaultObjects locks the key records and the config until
// lockMargin past until, unless this process locked them past until
// within lockRecheck.
func (l *objectLock) retainVaultObjects(ctx context.Context, store blob.Store, until time.Time) error {
	l.mu.Lock()
	done := !l.vaultUntil.Before(until) && time.Since(l.vaultAt) < lockRecheck
	l.mu.Unlock()
	if done {
		return nil
	}
	now, until := time.Now(), until.Add(lockMargin)
	keys := []string{configKey}
	err := store.List(ctx, keysPrefix, func(i blob.Info) error {
		keys = append(keys, i.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	for _, key := range keys {
		if err := l.locker.Retain(ctx, key, l.mode, until); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.vaultUntil, l.vaultAt = until, now
	l.mu.Unlock()
	return nil
}

// RetainManifest locks recovery point id in the store until at least
// until, its expiry: the packs (or format 1 chunks) holding its chunks
// first, then its manifest, then the vault's key records and config
// (see lock.go). A lock is only ever extended, so calling it again, or
// with an earlier date, is harmless; a later date extends every lock
// (for a recovery point kept longer). In a vault without Object Lock it
// does nothing. A chunk missing from the vault is a *[ChunkError]
// matching [blob.ErrNotExist].
func (v *Vault) RetainManifest(ctx context.Context, id string, until time.Time) error {
	if v.lock == nil {
		return nil
	}
	if err := v.retainManifest(ctx, id, until); err != nil {
		return fmt.Errorf("lock recovery point %s: %w", id, err)
	}
	return nil
}

func (v *Vault) retainManifest(ctx context.Context, id string, until time.Time) error {
	if until.IsZero() {
		return errors.New("no date to lock it until")
	}
	m, err := v.GetManifest(ctx, id)
	if err != nil {
		return err
	}
	objects, err := v.chunkObjects(ctx, m.Chunks)
	if err != nil {
		return err
	}
	err = concurrently(ctx, statConcurrency, objects, func(ctx context.Context, key string) error {
		return v.lock.retain(ctx, key, until)
	})
	if err != nil {
		return err
	}
	if err := v.lock.retain(ctx, manifestsPrefix+id, until); err != nil {
		return err
	}
	return v.lock.retainVaultObjects(ctx, v.store, until)
}

// chunkObjects returns the keys of the objects that hold chunks: every
// location of each, of its stored size. A chunk this process does not
// know is looked for again after reading the index again.
func (v *Vault) chunkObjects(ctx context.Context, chunks []ChunkRef) ([]string, error) {
	for attempt := 1; ; attempt++ {
		objects := map[string]bool{}
		var missing string
		for _, c := range chunks {
			sum, ok := decodeID(c.ID)
			if !ok {
				return nil, checkChunkID(c.ID)
			}
			n := 0
			for _, l := range v.index.locations(sum, c.StoredSize) {
				if c.StoredSize <= 0 || int64(l.length) == c.StoredSize {
					objects[locKey(c.ID, l)] = true
					n++
				}
			}
			if n == 0 && missing == "" {
				missing = c.ID
			}
		}
		if missing == "" {
			return slices.Sorted(maps.Keys(objects)), nil
		}
		if attempt == lookupAttempts {
			return nil, &ChunkError{ID: missing, Err: fmt.Errorf("missing from the vault: %w", blob.ErrNotExist)}
		}
		if err := v.refreshIndex(ctx); err != nil {
			return nil, err
		}
	}
}

// lockedPast reports whether the store still keeps the object under key
// at now (by the store's clock): whether deleting it would be refused.
func (v *Vault) lockedPast(ctx context.Context, key string, now time.Time) (bool, error) {
	if v.lock == nil {
		return false, nil
	}
	until, err := v.lock.locker.Retention(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return until.After(now), nil
}

// RecoverReport says what [Vault.Recover] did.
type RecoverReport struct {
	// Undeleted are the keys of the locked objects it brought back from
	// behind delete markers.
	Undeleted []string
	// Reindexed counts the packs no index listed that it listed again.
	Reindexed int
}

// Recover undoes what deletes can do to an immutable vault: it removes
// the delete markers that hide locked objects (manifests, packs, key
// records, the config), then lists again, reading their own headers, the
// packs no index object lists (index objects are not locked). Run it with
// no backup or collection running: a pack being written is not listed
// yet, and would be listed twice. It does nothing to objects whose lock
// has passed; what was deleted for good stays so.
func (v *Vault) Recover(ctx context.Context) (*RecoverReport, error) {
	if v.lock == nil {
		return nil, errors.New("recover vault: the vault is not immutable (no Object Lock): deleted objects are gone")
	}
	rep := &RecoverReport{}
	var err error
	if rep.Undeleted, err = v.lock.locker.Undelete(ctx, ""); err != nil {
		return rep, fmt.Errorf("recover vault: %w", err)
	}
	if rep.Reindexed, err = v.reindex(ctx); err != nil {
		return rep, fmt.Errorf("recover vault: %w", err)
	}
	return rep, v.refreshIndex(ctx)
}

// reindex stores index objects listing the packs no index lists, read
// from their own headers, and returns how many it listed.
func (v *Vault) reindex(ctx context.Context) (int, error) {
	s, err := v.scan(ctx)
	if err != nil {
		return 0, err
	}
	var packs []packInfo
	for _, id := range slices.Sorted(maps.Keys(s.stored)) {
		if _, ok := s.listed[id]; ok {
			continue
		}
		p, err := v.readPackHeader(ctx, id, s.stored[id].Size)
		if err != nil {
			return 0, err
		}
		packs = append(packs, p)
	}
	for rest := packs; len(rest) > 0; {
		n := min(len(rest), packsPerIndex)
		if _, err := v.putIndex(ctx, rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return len(packs), nil
}

// readPackHeader reads and authenticates the header of pack id, size
// bytes long: the sealed entries before the last 4 bytes, their length.
func (v *Vault) readPackHeader(ctx context.Context, id string, size int64) (packInfo, error) {
	bad := func(format string, args ...any) (packInfo, error) {
		return packInfo{}, fmt.Errorf("%w: pack %s: "+format, append([]any{ErrCorrupt, id}, args...)...)
	}
	if size < 4+sealOverhead {
		return bad("%d bytes is too short for a pack", size)
	}
	tail, err := v.readRange(ctx, packKey(id), size-4, 4)
	if err != nil {
		return packInfo{}, err
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if n < sealOverhead || n > maxPackHeader || n > size-4 {
		return bad("header length %d out of range", n)
	}
	sealed, err := v.readRange(ctx, packKey(id), size-4-n, n)
	if err != nil {
		return packInfo{}, err
	}
	payload, _, err := v.open(sealed, kindManifest, "packheader/"+id)
	if err != nil {
		return bad("header: %v", err)
	}
	entries, rest, err := parseEntries(payload)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the entries", len(rest))
	}
	if err != nil {
		return bad("header: %v", err)
	}
	for _, e := range entries {
		if int64(e.offset)+int64(e.length) > size-4-n {
			return bad("a chunk at %d+%d lies past the chunks", e.offset, e.length)
		}
	}
	return packInfo{id: id, size: size, entries: entries}, nil
}

// readRange reads length bytes of the object under key at off.
func (v *Vault) readRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	rc, err := v.store.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, length)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}
