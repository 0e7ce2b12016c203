package vault

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/blake3"

	"github.com/cofferhq/coffer/pkg/blob"
)

// MasterKeySize is the length in bytes of a master key.
const MasterKeySize = 32

// GenerateMasterKey returns a new random master key. Operators keep it
// outside the vault (a file, the environment, a key service), usually as the
// 64 hexadecimal characters of hex.EncodeToString.
func GenerateMasterKey() []byte {
	k := make([]byte, MasterKeySize)
	rand.Read(k) // never fails, per crypto/rand
	return k
}

// ParseMasterKey decodes a master key written as 64 hexadecimal characters
// or as standard or URL-safe base64, padded or not, of 32 bytes. Surrounding
// white space, such as a key file's final newline, is ignored. The error
// never repeats the input, which may be a mistyped secret.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*MasterKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == MasterKeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("parse master key: want 64 hexadecimal characters or base64 of %d bytes, got %d characters that are neither", MasterKeySize, len(s))
}

func checkMasterKey(master []byte) error {
	if len(master) != MasterKeySize {
		return fmt.Errorf("master key is %d bytes; want %d", len(master), MasterKeySize)
	}
	return nil
}

// Key derivation contexts, one per purpose, as BLAKE3's derive-key mode
// asks: globally unique, fixed forever.
const (
	ctxMasterWrap    = "coffer vault 2026 master key: wrap vault keys v1"
	ctxMasterCheck   = "coffer vault 2026 master key: fingerprint v1"
	ctxChunkID       = "coffer vault 2026 vault key: chunk id hash v1"
	ctxChunkSeal     = "coffer vault 2026 vault key: chunk seal v1"
	ctxManifestSeal  = "coffer vault 2026 vault key: manifest seal v1"
	ctxPrimaryKeyID  = "coffer vault 2026 master key: primary vault key id v1"
	keyRecordFormat  = 1
	keyIDSize        = 8
	keysPrefix       = "keys/"
	maxKeyRecordSize = 64 << 10
)

// keyID names a vault key (derived for the primary key, random for the
// others). It is stored in every sealed object's header, and is the key
// record's name in hex.
type keyID [keyIDSize]byte

func (id keyID) String() string { return hex.EncodeToString(id[:]) }

// keyRecord is a vault key as stored at keys/<id>: the key itself, with its
// metadata, sealed under a key derived from the master key. Check is a
// fingerprint of the master key, so that a wrong master key is told apart
// from a damaged record.
type keyRecord struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Check  string `json:"master_check"`
	Nonce  []byte `json:"nonce"`
	Sealed []byte `json:"sealed"`
}

// keySecret is what a keyRecord seals. Seq orders the keys of a vault: 0 is
// the primary key created by Init, whose chunk-id key and chunker table stay
// in use for the vault's life so that deduplication survives rotation; the
// key with the highest Seq seals new data.
type keySecret struct {
	ID      string    `json:"id"`
	Seq     int       `json:"seq"`
	Created time.Time `json:"created"`
	Key     []byte    `json:"key"`
}

// vaultKey is one unwrapped vault key with the ciphers derived from it.
type vaultKey struct {
	id       keyID
	seq      int
	chunk    cipher.AEAD
	manifest cipher.AEAD
}

// keyring holds a vault's keys. It is safe for concurrent use.
type keyring struct {
	chunkIDKey [32]byte // keyed BLAKE3 key for chunk ids, from the primary key
	gear       *gearTable

	mu     sync.RWMutex
	byID   map[keyID]*vaultKey
	active *vaultKey
}

func (kr *keyring) activeKey() *vaultKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}

func (kr *keyring) lookup(id keyID) *vaultKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.byID[id]
}

func (kr *keyring) add(k *vaultKey) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.byID[k.id] = k
	if kr.active == nil || k.seq > kr.active.seq {
		kr.active = k
	}
}

func (kr *keyring) nextSeq() int {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active.seq + 1
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // only for a key that is not 32 bytes: a programming error
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

func deriveKey(context string, material []byte) []byte {
	out := make([]byte, 32)
	blake3.DeriveKey(context, material, out)
	return out
}

func masterCheck(master []byte) string {
	var out [8]byte
	blake3.DeriveKey(ctxMasterCheck, master, out[:])
	return hex.EncodeToString(out[:])
}

func parseKeyID(s string) (keyID, error) {
	var id keyID
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != keyIDSize {
		return id, fmt.Errorf("key id %q is not %d hex bytes", s, keyIDSize)
	}
	copy(id[:], raw)
	return id, nil
}

func newVaultKey(s *keySecret) (*vaultKey, error) {
	id, err := parseKeyID(s.ID)
	if err != nil {
		return nil, err
	}
	if len(s.Key) != 32 {
		return nil, fmt.Errorf("key %s is %d bytes; want 32", s.ID, len(s.Key))
	}
	return &vaultKey{
		id:       id,
		seq:      s.Seq,
		chunk:    newGCM(deriveKey(ctxChunkSeal, s.Key)),
		manifest: newGCM(deriveKey(ctxManifestSeal, s.Key)),
	}, nil
}

func keyRecordAAD(id string) []byte { return []byte("coffer vault key record/" + id) }

// sealKeyRecord wraps s under master.
func sealKeyRecord(master []byte, s *keySecret) ([]byte, error) {
	plain, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	wrap := newGCM(deriveKey(ctxMasterWrap, master))
	nonce := make([]byte, wrap.NonceSize())
	rand.Read(nonce)
	rec := keyRecord{
		Format: keyRecordFormat,
		ID:     s.ID,
		Check:  masterCheck(master),
		Nonce:  nonce,
		Sealed: wrap.Seal(nil, nonce, plain, keyRecordAAD(s.ID)),
	}
	return json.MarshalIndent(rec, "", "  ")
}

// openKeyRecord unwraps the record stored under id with master.
func openKeyRecord(master []byte, id string, raw []byte) (*keySecret, error) {
	var rec keyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("%w: key record %s is not valid JSON: %v", ErrCorrupt, id, err)
	}
	if rec.Format != keyRecordFormat {
		return nil, fmt.Errorf("key record %s has format %d; this version reads format %d", id, rec.Format, keyRecordFormat)
	}
	// Only the sealed key is authenticated; the record around it is JSON,
	// which would read the same after some changes (a field name's case,
	// white space). Every record is written in one form, so any other
	// form is damage.
	if canon, err := json.MarshalIndent(rec, "", "  "); err != nil || !bytes.Equal(canon, raw) {
		return nil, fmt.Errorf("%w: key record %s was altered (it is not in the form coffer writes)", ErrCorrupt, id)
	}
	wrap := newGCM(deriveKey(ctxMasterWrap, master))
	if rec.ID != id || len(rec.Nonce) != wrap.NonceSize() {
		return nil, fmt.Errorf("%w: key record %s is malformed", ErrCorrupt, id)
	}
	plain, err := wrap.Open(nil, rec.Nonce, rec.Sealed, keyRecordAAD(id))
	checked := subtle.ConstantTimeCompare([]byte(rec.Check), []byte(masterCheck(master))) == 1
	switch {
	case err != nil && !checked:
		return nil, fmt.Errorf("%w (key record %s was sealed with another master key)", ErrWrongKey, id)
	case err != nil:
		return nil, fmt.Errorf("%w: key record %s fails authentication although the master key matches: it was altered", ErrCorrupt, id)
	case !checked:
		// the key opens the record, so its fingerprint was altered
		return nil, fmt.Errorf("%w: key record %s: its master key fingerprint was altered", ErrCorrupt, id)
	}
	var s keySecret
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("%w: key record %s: %v", ErrCorrupt, id, err)
	}
	if s.ID != id {
		return nil, fmt.Errorf("%w: key record %s holds key %s", ErrCorrupt, id, s.ID)
	}
	return &s, nil
}

// newPrimaryKeySecret is the vault key Init creates: random, as every
// vault key, but named by an id derived from the master key, so that
// Inits racing on one empty store with one master key all try to create
// the same key record, and the first to create it (blob.Create) gives the
// vault its key. Vaults made before this derived the key itself from the
// master key too, which a rekey cannot change; they open as any other.
func newPrimaryKeySecret(master []byte) *keySecret {
	s := newKeySecret(0)
	var id keyID
	copy(id[:], deriveKey(ctxPrimaryKeyID, master))
	s.ID = id.String()
	return s
}

func newKeySecret(seq int) *keySecret {
	var id keyID
	rand.Read(id[:])
	key := make([]byte, 32)
	rand.Read(key)
	return &keySecret{ID: id.String(), Seq: seq, Created: time.Now().UTC(), Key: key}
}

// putKeyRecord stores s sealed under master.
func putKeyRecord(ctx context.Context, store blob.Store, master []byte, s *keySecret) error {
	raw, err := sealKeyRecord(master, s)
	if err != nil {
		return fmt.Errorf("seal key %s: %w", s.ID, err)
	}
	if err := store.Put(ctx, keysPrefix+s.ID, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("store key %s: %w", s.ID, err)
	}
	return nil
}

// createKeyRecord stores s sealed under master if its record does not
// exist yet; if it does, the error matches blob.ErrExist.
func createKeyRecord(ctx context.Context, store blob.Store, master []byte, s *keySecret) error {
	raw, err := sealKeyRecord(master, s)
	if err != nil {
		return fmt.Errorf("seal key %s: %w", s.ID, err)
	}
	if err := blob.Create(ctx, store, keysPrefix+s.ID, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("store key %s: %w", s.ID, err)
	}
	return nil
}

// listKeyIDs returns the ids of the records under keys/, in order.
func listKeyIDs(ctx context.Context, store blob.Store) ([]string, error) {
	var ids []string
	err := store.List(ctx, keysPrefix, func(i blob.Info) error {
		ids = append(ids, strings.TrimPrefix(i.Key, keysPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return ids, nil
}

// keyRecordNames returns the vault's key ids, in order, with the name of
// the object holding each one's record: keys/<id>, or its staged record
// while a committed rekey is not finished (rekey.go). It also returns that
// rekey's marker, or nil.
func keyRecordNames(ctx context.Context, store blob.Store) ([]string, map[string]string, *rekeyMarker, error) {
	ids, err := listKeyIDs(ctx, store)
	if err != nil {
		return nil, nil, nil, err
	}
	marker, err := readRekeyMarker(ctx, store)
	if err != nil {
		return nil, nil, nil, err
	}
	names := make(map[string]string, len(ids))
	for _, id := range ids {
		names[id] = keysPrefix + id
	}
	if marker != nil {
		for _, id := range marker.Keys {
			if _, ok := names[id]; !ok {
				ids = append(ids, id)
			}
			names[id] = rekeyKeysPrefix + id
		}
		slices.Sort(ids)
	}
	return ids, names, marker, nil
}

// openKeySecrets reads and unwraps every vault key in store with master.
// A store without keys gives an error matching ErrNotInitialized; a
// master key that wraps none of them one matching ErrWrongKey.
func openKeySecrets(ctx context.Context, store blob.Store, master []byte) ([]*keySecret, error) {
	ids, names, marker, err := keyRecordNames(ctx, store)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ErrNotInitialized
	}
	if marker != nil && subtle.ConstantTimeCompare([]byte(marker.Check), []byte(masterCheck(master))) != 1 {
		return nil, fmt.Errorf("%w (the vault's keys are being wrapped with another master key by coffer vault rekey; give that one)", ErrWrongKey)
	}
	secrets := make([]*keySecret, 0, len(ids))
	for _, id := range ids {
		raw, err := readSmall(ctx, store, names[id], maxKeyRecordSize)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", id, err)
		}
		s, err := openKeyRecord(master, id, raw)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, s)
	}
	return secrets, nil
}

// loadKeyring reads and unwraps every key record in store.
func loadKeyring(ctx context.Context, store blob.Store, master []byte) (*keyring, error) {
	secrets, err := openKeySecrets(ctx, store, master)
	if err != nil {
		return nil, err
	}
	kr := &keyring{byID: make(map[keyID]*vaultKey)}
	var primary *keySecret
	for _, s := range secrets {
		k, err := newVaultKey(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if s.Seq == 0 {
			if primary != nil {
				return nil, fmt.Errorf("%w: two primary keys, %s and %s (initialized twice at once?)", ErrCorrupt, primary.ID, s.ID)
			}
			primary = s
		}
		kr.add(k)
	}
	if primary == nil {
		return nil, fmt.Errorf("%w: no primary key among %d key records", ErrCorrupt, len(secrets))
	}
	kr.setPrimary(primary.Key)
	return kr, nil
}

// keyReloadTimeout bounds keyAdded's reading of the keys, which has no
// context of its own to honour.
const keyReloadTimeout = 30 * time.Second

// keyAdded reads the vault's keys again for an object sealed with key id,
// which v does not have: a key another process added (coffer vault key
// rotate) since v was opened. The keys found become v's, the newest
// sealing what v stores from now on. It reads them at most once a second,
// so that objects naming keys that do not exist (damage) cost little, and
// returns nil if id is still unknown.
func (v *Vault) keyAdded(id keyID) *vaultKey {
	v.reload.Lock()
	defer v.reload.Unlock()
	if k := v.keys.lookup(id); k != nil || time.Since(v.reload.last) < time.Second {
		return k
	}
	v.reload.last = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), keyReloadTimeout)
	defer cancel()
	// A failure (a master key rekeyed away, the store down) leaves the key
	// unknown, which the caller reports.
	secrets, _ := openKeySecrets(ctx, v.store, v.master)
	for _, s := range secrets {
		if s.Seq == 0 {
			continue // the primary key never changes
		}
		if k, err := newVaultKey(s); err == nil && v.keys.lookup(k.id) == nil {
			v.keys.add(k)
		}
	}
	return v.keys.lookup(id)
}

func (kr *keyring) setPrimary(key []byte) {
	copy(kr.chunkIDKey[:], deriveKey(ctxChunkID, key))
	kr.gear = newGearTable(kr.chunkIDKey[:])
}

// readSmall reads the whole object under key, refusing one larger than max.
func readSmall(ctx context.Context, store blob.Store, key string, max int64) ([]byte, error) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, key, max)
	}
	return b, nil
}

// KeyMaterial returns every secret master unwraps from the vault's store:
// the key that wraps vault keys, each vault key, and the subkeys derived
// from them that seal chunks and manifests and name chunks. It exists for
// tests that prove no secret reaches a log, an API answer or a message;
// coffer itself never calls it, and it reveals nothing that the holder of
// master and the store could not compute.
func (v *Vault) KeyMaterial(ctx context.Context, master []byte) ([][]byte, error) {
	if err := checkMasterKey(master); err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	secrets, err := openKeySecrets(ctx, v.store, master)
	if err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	out := [][]byte{deriveKey(ctxMasterWrap, master)}
	for _, s := range secrets {
		out = append(out, s.Key, deriveKey(ctxChunkSeal, s.Key), deriveKey(ctxManifestSeal, s.Key))
		if s.Seq == 0 {
			out = append(out, deriveKey(ctxChunkID, s.Key))
		}
	}
	return out, nil
}
