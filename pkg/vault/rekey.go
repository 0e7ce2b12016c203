package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/pkg/blob"
)

// A rekey wraps every vault key anew with a new master key, rewriting
// only the key records, in three steps, so that a crash at any point
// leaves a vault that exactly one of the two master keys opens:
//
//  1. stage: each key's record, sealed under the new master key, is
//     stored at rekey/keys/<id>. Open ignores staged records: the old
//     master key opens the vault, the new one is refused.
//  2. commit: the marker rekey/commit, naming the old and the new master
//     keys (their fingerprints) and the staged keys, is created. From then on Open
//     reads those keys' staged records: the new master key opens the
//     vault, the old one is refused with ErrWrongKey.
//  3. finish: each staged record is copied over keys/<id>, then the
//     marker is deleted, then the staged records. Without the marker,
//     keys/ alone is the vault's keys again, all under the new master key,
//     as a vault never rekeyed.
//
// Running the same rekey again after it stopped part-way redoes an
// uncommitted one (staged records left by it are deleted first) and
// finishes a committed one.
const (
	rekeyKeysPrefix = "rekey/keys/"
	rekeyMarkerKey  = "rekey/commit"
	rekeyFormat     = 1
	maxMarkerSize   = 1 << 20
)

// rekeyMarker is the object rekey/commit.
type rekeyMarker struct {
	Format int `json:"format"`
	// Check is the new master key's fingerprint, OldCheck the one it
	// replaces.
	Check    string `json:"master_check"`
	OldCheck string `json:"old_master_check"`
	// Keys are the ids of the staged records.
	Keys []string `json:"keys"`
}

// readRekeyMarker returns the marker of a committed, unfinished rekey, or
// nil if there is none.
func readRekeyMarker(ctx context.Context, store blob.Store) (*rekeyMarker, error) {
	raw, err := readSmall(ctx, store, rekeyMarkerKey, maxMarkerSize)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rekeyMarkerKey, err)
	}
	var m rekeyMarker
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, rekeyMarkerKey, err)
	}
	if m.Format != rekeyFormat {
		return nil, fmt.Errorf("%s has format %d; this version reads format %d", rekeyMarkerKey, m.Format, rekeyFormat)
	}
	for _, id := range m.Keys {
		if _, err := parseKeyID(id); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, rekeyMarkerKey, err)
		}
	}
	return &m, nil
}

// Rekey wraps every vault key in store anew with newMaster, so that
// newMaster opens the vault from now on and oldMaster, its master key
// until now, is refused with an error matching [ErrWrongKey]. Nothing but
// the key records is rewritten: chunks, manifests and indexes stay as they
// are, since the vault keys that seal them do not change.
//
// It is safe against a crash at any point: the vault opens with oldMaster
// until the rekey commits, with newMaster from then on, and never with
// neither. Calling Rekey again with the same keys after it failed
// part-way finishes the rekey; after it succeeded, it changes nothing.
// It returns the number of vault keys newMaster now wraps.
//
// Processes that have the vault open keep the keys they hold, but their
// next Open needs newMaster. A key added ([Vault.AddKey]) while Rekey runs
// makes it fail before it commits; run it again.
func Rekey(ctx context.Context, store blob.Store, oldMaster, newMaster []byte) (int, error) {
	if err := checkMasterKey(oldMaster); err != nil {
		return 0, fmt.Errorf("rekey vault: current %w", err)
	}
	if err := checkMasterKey(newMaster); err != nil {
		return 0, fmt.Errorf("rekey vault: new %w", err)
	}
	if bytes.Equal(oldMaster, newMaster) {
		return 0, errors.New("rekey vault: the new master key is the current one")
	}
	if err := rekey(ctx, store, oldMaster, newMaster); err != nil {
		return 0, fmt.Errorf("rekey vault: %w", err)
	}
	// and newMaster opens every key
	secrets, err := openKeySecrets(ctx, store, newMaster)
	if err != nil {
		return 0, fmt.Errorf("rekey vault: the keys after it: %w", err)
	}
	return len(secrets), nil
}

func rekey(ctx context.Context, store blob.Store, oldMaster, newMaster []byte) error {
	oldCheck, newCheck := masterCheck(oldMaster), masterCheck(newMaster)
	marker, err := readRekeyMarker(ctx, store)
	if err != nil {
		return err
	}
	if marker != nil {
		switch {
		case marker.Check == newCheck && marker.OldCheck == oldCheck: // this rekey, committed before it stopped
			return finishRekey(ctx, store, newMaster, marker)
		case marker.Check == oldCheck: // an earlier one, to oldMaster
			if err := finishRekey(ctx, store, oldMaster, marker); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w (an unfinished rekey is wrapping the vault's keys with another key)", ErrWrongKey)
		}
	}
	secrets, err := openKeySecrets(ctx, store, oldMaster)
	if errors.Is(err, ErrWrongKey) {
		if _, derr := openKeySecrets(ctx, store, newMaster); derr == nil {
			// finished before: what may be left is staged records
			return clearStaged(ctx, store)
		}
	}
	if err != nil {
		return err
	}
	if err := clearStaged(ctx, store); err != nil {
		return err
	}
	m := &rekeyMarker{Format: rekeyFormat, Check: newCheck, OldCheck: oldCheck}
	for _, s := range secrets {
		raw, err := sealKeyRecord(newMaster, s)
		if err != nil {
			return fmt.Errorf("seal key %s: %w", s.ID, err)
		}
		if err := store.Put(ctx, rekeyKeysPrefix+s.ID, bytes.NewReader(raw), int64(len(raw))); err != nil {
			return fmt.Errorf("stage key %s: %w", s.ID, err)
		}
		m.Keys = append(m.Keys, s.ID)
	}
	// A key added meanwhile would stay wrapped by oldMaster alone.
	ids, err := listKeyIDs(ctx, store)
	if err != nil {
		return err
	}
	if !slices.Equal(ids, m.Keys) {
		return fmt.Errorf("the vault's keys changed while they were wrapped anew (%d, now %d; a key rotation?): nothing is changed, run the rekey again", len(m.Keys), len(ids))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	err = blob.Create(ctx, store, rekeyMarkerKey, bytes.NewReader(raw), int64(len(raw)))
	if errors.Is(err, blob.ErrExist) {
		return errors.New("another rekey committed while this one ran")
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return finishRekey(ctx, store, newMaster, m)
}

// finishRekey copies the staged records of the committed rekey m, which
// must open with master, over the vault's, then deletes the marker and
// the staged records.
func finishRekey(ctx context.Context, store blob.Store, master []byte, m *rekeyMarker) error {
	staged := make([][]byte, len(m.Keys))
	for i, id := range m.Keys {
		raw, err := readSmall(ctx, store, rekeyKeysPrefix+id, maxKeyRecordSize)
		if err != nil {
			return fmt.Errorf("read staged key %s: %w", id, err)
		}
		if _, err := openKeyRecord(master, id, raw); err != nil {
			return fmt.Errorf("staged key %s: %w", id, err)
		}
		staged[i] = raw
	}
	for i, id := range m.Keys {
		if err := store.Put(ctx, keysPrefix+id, bytes.NewReader(staged[i]), int64(len(staged[i]))); err != nil {
			return fmt.Errorf("store key %s: %w", id, err)
		}
	}
	if err := store.Delete(ctx, rekeyMarkerKey); err != nil {
		return fmt.Errorf("delete %s: %w", rekeyMarkerKey, err)
	}
	return clearStaged(ctx, store)
}

// clearStaged deletes the staged records of a rekey that is finished, or
// that stopped before it committed. There must be no marker.
func clearStaged(ctx context.Context, store blob.Store) error {
	var staged []string
	err := store.List(ctx, rekeyKeysPrefix, func(i blob.Info) error {
		staged = append(staged, i.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list staged keys: %w", err)
	}
	for _, key := range staged {
		if err := store.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete staged key %s: %w", strings.TrimPrefix(key, rekeyKeysPrefix), err)
		}
	}
	return nil
}
