package vault

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/cofferhq/coffer/pkg/blob"
)

var (
	// ErrWrongKey is matched by the error Open returns when the master key
	// given is not the one the vault's keys are wrapped with.
	ErrWrongKey = errors.New("master key does not match this vault")

	// ErrCorrupt is matched by errors reporting stored data that fails
	// verification: a chunk, manifest or key record that was altered,
	// truncated, swapped for another, or sealed with an unknown key. No
	// data that fails verification is ever returned.
	ErrCorrupt = errors.New("vault data is corrupt")

	// ErrInitialized is matched by the error Init returns when the store
	// already holds a vault.
	ErrInitialized = errors.New("vault already initialized")

	// ErrNotInitialized is matched by the error Open returns when the store
	// holds no vault.
	ErrNotInitialized = errors.New("no vault in this store")
)

// ChunkError reports a problem with one chunk. Its Err says what, and
// matches [ErrCorrupt] for a chunk that fails verification or
// [blob.ErrNotExist] for one missing from the vault.
type ChunkError struct {
	// ID is the chunk's id.
	ID string
	// Err is what is wrong with it.
	Err error
}

// Error says which chunk and what is wrong with it.
func (e *ChunkError) Error() string { return "chunk " + e.ID + ": " + e.Err.Error() }

// Unwrap returns e.Err.
func (e *ChunkError) Unwrap() error { return e.Err }

func corruptChunk(id, format string, args ...any) error {
	return &ChunkError{ID: id, Err: fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)}
}

// ChunkRef is a chunk as a stream uses it.
type ChunkRef struct {
	// ID is the keyed BLAKE3 hash of the chunk's plaintext, in hex.
	ID string `json:"id"`
	// Size is the length of the chunk's plaintext.
	Size int64 `json:"size"`
	// StoredSize is the length of the sealed chunk in the store.
	StoredSize int64 `json:"stored_size"`
}

// ChunkInfo describes a stored chunk, for garbage collection.
type ChunkInfo struct {
	// ID is the chunk's id.
	ID string
	// StoredSize is the length of the sealed chunk in the store.
	StoredSize int64
	// ModTime is when the chunk was stored, by the store's clock.
	ModTime time.Time
	// Pack is the pack that holds the chunk; empty for a chunk stored
	// alone (vault format 1).
	Pack string
}

// Vault is content-addressed, encrypted, deduplicated storage of streams on
// a [blob.Store]. It is safe for concurrent use: several writers and readers
// may run at once.
type Vault struct {
	store blob.Store
	keys  *keyring
	enc   *zstd.Encoder
	dec   *zstd.Decoder // for chunks: output bounded by maxChunkSize
	mdec  *zstd.Decoder // for manifests and indexes
	index *vaultIndex
	// chunking cuts new streams, as the vault's config says
	chunking chunkParams
	zbufs    sync.Pool // of *[]byte, for compressed chunks
	// idHasher is cloned, not shared: a Hasher is not safe for concurrent
	// use, but a clone of a fresh keyed one starts from the key.
	idHasher *blake3.Hasher
	// condemned is what this process knows of garbage collection's
	// condemned generations (condemned.go)
	condemned condemnedState
	// writing is this process's open writer sessions (condemned.go)
	writing openSessions
	// ignoreCondemned, for tests only, makes writers deduplicate against
	// condemned locations too, which garbage collection is then free to
	// delete under them
	ignoreCondemned bool
	// lock is the store's Object Lock, in an immutable vault (lock.go)
	lock *objectLock
	// master is the master key the vault was opened with, to load keys
	// other processes add (keyAdded)
	master []byte
	reload struct {
		sync.Mutex
		last time.Time
	}
}

// Init creates a vault in store, with a random primary vault key wrapped
// by master, and returns it open. It refuses, with an error matching
// [ErrInitialized], a store that already holds a vault. Two Inits racing
// on one empty store with one master key (two committers starting at
// once) both succeed and agree: the primary key's record has a name
// derived from master and is created only if absent ([blob.Create]), so
// the first to create it gives the vault its key and the other opens the
// vault with it.
func Init(ctx context.Context, store blob.Store, master []byte) (*Vault, error) {
	if err := checkMasterKey(master); err != nil {
		return nil, fmt.Errorf("init vault: %w", err)
	}
	var exists bool
	err := store.List(ctx, keysPrefix, func(blob.Info) error {
		exists = true
		return errStopList
	})
	if err != nil && !errors.Is(err, errStopList) {
		return nil, fmt.Errorf("init vault: %w", err)
	}
	if exists {
		return nil, fmt.Errorf("init vault: %w", ErrInitialized)
	}
	// The config before the key: a store with a config and no key holds
	// no vault yet (Open says ErrNotInitialized), so an Init that stops
	// in between leaves nothing in the next one's way, and racing Inits
	// write the same config.
	if err := putConfig(ctx, store, vaultConfig{Format: formatPacks, Chunking: chunking256K}); err != nil {
		return nil, fmt.Errorf("init vault: %w", err)
	}
	err = createKeyRecord(ctx, store, master, newPrimaryKeySecret(master))
	if err != nil && !errors.Is(err, blob.ErrExist) { // ErrExist: another Init came first
		return nil, fmt.Errorf("init vault: %w", err)
	}
	return Open(ctx, store, master)
}

var errStopList = errors.New("stop listing")

// Open opens the vault in store with master. A wrong master key gives an
// error matching [ErrWrongKey]; a store without a vault one matching
// [ErrNotInitialized]; damaged key records one matching [ErrCorrupt].
func Open(ctx context.Context, store blob.Store, master []byte) (*Vault, error) {
	if err := checkMasterKey(master); err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	kr, err := loadKeyring(ctx, store, master)
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	cfg, err := loadConfig(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	v, err := newVault(store, kr, cfg)
	if err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	v.master = slices.Clone(master)
	if err := v.refreshIndex(ctx); err != nil {
		return nil, fmt.Errorf("open vault: %w", err)
	}
	return v, nil
}

func newVault(store blob.Store, kr *keyring, cfg vaultConfig) (*Vault, error) {
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(n),
		zstd.WithEncoderCRC(false), // GCM and the chunk id already check
		// matches within 1 MiB, a new vault's largest chunk: each
		// encoder's history is then about 2.5 MiB rather than 8
		zstd.WithWindowSize(1<<20),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxMemory(maxChunkSize),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	mdec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifestSize),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	h, err := blake3.NewKeyed(kr.chunkIDKey[:])
	if err != nil {
		return nil, err
	}
	v := &Vault{
		store:    store,
		keys:     kr,
		enc:      enc,
		dec:      dec,
		mdec:     mdec,
		index:    newVaultIndex(),
		chunking: chunkings[cfg.Chunking],
		idHasher: h,
	}
	v.zbufs.New = func() any {
		b := make([]byte, 0, 1<<20)
		return &b
	}
	if cfg.ObjectLock != "" {
		if v.lock, err = newObjectLock(store, cfg.ObjectLock); err != nil {
			return nil, err
		}
		v.store = purging{Store: store, l: v.lock.locker}
	}
	return v, nil
}

// AddKey adds a new vault key, wrapped by master, which must be the vault's
// master key, and makes it the key that seals new chunks and manifests from
// now on, here and in every vault opened later. Data sealed with older keys
// stays readable; nothing is rewritten. Chunk ids keep using the key made by
// Init, so deduplication carries across. It returns the new key's id.
func (v *Vault) AddKey(ctx context.Context, master []byte) (string, error) {
	if err := checkMasterKey(master); err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	// The master key must be the one the vault uses, or the next Open
	// would find records wrapped by two different keys.
	if _, err := openKeySecrets(ctx, v.store, master); err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	s := newKeySecret(v.keys.nextSeq())
	k, err := newVaultKey(s)
	if err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	if err := putKeyRecord(ctx, v.store, master, s); err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	v.keys.add(k)
	return s.ID, nil
}

// Sealed object layout, for chunks and manifests alike:
//
//	[0]      format version, 1
//	[1]      flags: bit 0 set if the payload is zstd-compressed, bit 1 if
//	         it is s2-compressed (a chunk's only; never both)
//	[2:10]   id of the vault key that sealed it
//	[10:22]  AES-GCM nonce, random
//	[22:]    AES-256-GCM ciphertext of the payload, then the 16-byte tag
//
// The additional data is the header followed by the object's name
// ("chunk/<id>" or "manifest/<id>"), so neither the header nor the object's
// place can be changed without failing authentication. Nonces are random:
// with 96 bits, one key can seal billions of objects before a collision
// becomes a concern, and AddKey starts a fresh key.
//
// The flags are authenticated with the rest of the header, so a flag a
// reader does not know means a newer writer, or a bug: open refuses it
// rather than return a payload it cannot decode. Coffer before S2 refuses
// s2-compressed chunks so.
const (
	sealFormat     = 1
	flagZstd       = 1 << 0
	flagS2         = 1 << 1
	headerSize     = 2 + keyIDSize + nonceSize
	nonceSize      = 12
	tagSize        = 16
	sealOverhead   = headerSize + tagSize
	maxSealedChunk = maxChunkSize + sealOverhead
)

// objectKind tells which cipher of a vault key seals an object.
type objectKind int

const (
	kindChunk objectKind = iota
	kindManifest
)

// flags returns the flags an object of kind may carry: a chunk is
// compressed with zstd or s2, a manifest or an index only with zstd.
func (k objectKind) flags() byte {
	if k == kindChunk {
		return flagZstd | flagS2
	}
	return flagZstd
}

func (k *vaultKey) aead(kind objectKind) cipher.AEAD {
	if kind == kindManifest {
		return k.manifest
	}
	return k.chunk
}

// sealTo seals payload, the content of the object named name, into out,
// whose capacity must be at least headerSize+len(payload)+tagSize, and
// returns the sealed object. payload may lie in out exactly where the
// ciphertext goes, out[headerSize:], to be sealed in place; otherwise it must
// not overlap out. aad is scratch space for the additional data, returned
// grown.
func sealTo(out []byte, k *vaultKey, kind objectKind, flags byte, payload []byte, name string, aad []byte) (sealed, aadOut []byte) {
	out = out[:headerSize]
	out[0], out[1] = sealFormat, flags
	copy(out[2:], k.id[:])
	nonce := out[2+keyIDSize : headerSize]
	rand.Read(nonce)
	aad = append(append(aad[:0], out...), name...)
	ct := k.aead(kind).Seal(out[headerSize:headerSize], nonce, payload, aad)
	return out[:headerSize+len(ct)], aad
}

// open authenticates and decrypts a sealed object in place, returning the
// payload (aliasing sealed) and the header's flags. Errors are plain
// descriptions; callers attach ErrCorrupt and the object's name.
func (v *Vault) open(sealed []byte, kind objectKind, name string) (payload []byte, flags byte, err error) {
	if len(sealed) < sealOverhead {
		return nil, 0, fmt.Errorf("%d bytes is shorter than any sealed object", len(sealed))
	}
	if sealed[0] != sealFormat {
		return nil, 0, fmt.Errorf("unknown format version %d", sealed[0])
	}
	flags = sealed[1]
	if flags&^kind.flags() != 0 {
		return nil, 0, fmt.Errorf("unknown flags %#x", flags)
	}
	if flags&flagZstd != 0 && flags&flagS2 != 0 {
		return nil, 0, fmt.Errorf("flags %#x name two compressions", flags)
	}
	var id keyID
	copy(id[:], sealed[2:2+keyIDSize])
	k := v.keys.lookup(id)
	if k == nil {
		k = v.keyAdded(id)
	}
	if k == nil {
		return nil, 0, fmt.Errorf("sealed with key %s, which this vault does not have", id)
	}
	aad := make([]byte, 0, headerSize+len(name))
	aad = append(append(aad, sealed[:headerSize]...), name...)
	nonce := sealed[2+keyIDSize : headerSize]
	ct := sealed[headerSize:]
	payload, err = k.aead(kind).Open(ct[:0], nonce, ct, aad)
	if err != nil {
		return nil, 0, errors.New("fails authentication: altered, truncated, or stored under another name")
	}
	return payload, flags, nil
}

// Chunk ids are 64 lowercase hex characters; chunks live at
// chunks/<first two>/<id>.
const (
	chunkIDLen   = 64
	chunksPrefix = "chunks/"
)

func chunkKey(id string) string { return chunksPrefix + id[:2] + "/" + id }

func validChunkID(id string) bool {
	if len(id) != chunkIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checkChunkID(id string) error {
	if !validChunkID(id) {
		return &ChunkError{ID: id, Err: fmt.Errorf("invalid chunk id: want %d lowercase hex characters", chunkIDLen)}
	}
	return nil
}

// chunkID returns the keyed hash of a chunk's plaintext.
func (v *Vault) chunkID(h *blake3.Hasher, data []byte) [32]byte {
	h.Reset()
	h.Write(data)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// chunkBufSize is the size of the buffers chunks are cut into: room for the
// largest chunk of the vault's chunking with the sealed header before it
// and the tag after, so that a chunk can be sealed where it lies.
func (v *Vault) chunkBufSize() int { return headerSize + v.chunking.max + tagSize }

// chunkData returns the part of a chunk buffer where the chunk's plaintext
// goes.
func chunkData(buf []byte) []byte { return buf[headerSize:headerSize] }

// chunkScratch is a worker's reusable memory for sealing chunks.
type chunkScratch struct {
	hasher *blake3.Hasher
	aad    []byte
}

func (v *Vault) newChunkScratch() *chunkScratch {
	return &chunkScratch{hasher: v.idHasher.Clone(), aad: make([]byte, 0, headerSize+128)}
}

// putChunk adds the chunk data to the writer's packs unless the vault
// (or the writer) already has it, compressed with comp when that shrinks
// it. data must be chunkData of a buffer of chunkBufSize(), and is
// overwritten. own is the writer's set of chunks, so that a chunk repeated
// in a stream is stored once. It reports the chunk's reference and whether
// it was stored now. A chunk the vault has is not stored again however it
// was compressed: its id is of its plaintext, and every reader decompresses
// what the sealed chunk's flags say.
func (v *Vault) putChunk(ctx context.Context, buf, data []byte, sc *chunkScratch, comp Compression, probe *compressProbe, own *knownSet, p *packer) (ChunkRef, bool, error) {
	sum := v.chunkID(sc.hasher, data)
	id := hex.EncodeToString(sum[:])
	ref := ChunkRef{ID: id, Size: int64(len(data))}
	lookup := v.index.lookupLive
	if v.ignoreCondemned {
		lookup = v.index.lookup
	}
	if loc, ok := lookup(sum); ok {
		ref.StoredSize = int64(loc.length)
		return ref, false, nil
	}
	stored, claimed, err := own.claim(ctx, sum)
	if err != nil {
		return ref, false, err
	}
	if !claimed {
		ref.StoredSize = stored
		return ref, false, nil
	}
	ok := false
	defer func() { own.release(sum, ref.StoredSize, ok) }()

	payload, flags := data, byte(0)
	var zbuf *[]byte
	if comp != Uncompressed && probe.try() {
		zbuf = v.zbufs.Get().(*[]byte)
		z, flag := v.compress(comp, *zbuf, data)
		*zbuf = z[:0]
		// Keep the compressed form only if it saves more than 1/64: below
		// that, decompressing on every restore costs more than it saves.
		shrank := len(z) < len(data)-len(data)/64
		if shrank {
			payload, flags = z, flag
		}
		probe.result(shrank)
	}
	var sealed []byte
	sealed, sc.aad = sealTo(buf, v.keys.activeKey(), kindChunk, flags, payload, "chunk/"+id, sc.aad)
	if zbuf != nil {
		v.zbufs.Put(zbuf)
	}
	if err := p.add(sum, sealed, len(data)); err != nil {
		return ref, false, &ChunkError{ID: id, Err: fmt.Errorf("pack: %w", err)}
	}
	ref.StoredSize = int64(len(sealed))
	ok = true
	return ref, true, nil
}

// chunkBufs is reusable memory for loading chunks: raw receives the sealed
// object and, decrypted in place, the plaintext of an uncompressed chunk;
// plain receives the plaintext of a compressed one.
type chunkBufs struct {
	raw, plain []byte
	// streamSum says that the chunk's reader checks the whole stream's
	// length and checksum before anything may use its bytes (see
	// [Vault.NewStreamReader]): opening the chunk then leaves out the
	// keyed hash of its plaintext, which the stream's checksum covers.
	streamSum bool
}

// loadChunk fetches chunk id, verifies it and returns its plaintext, which
// aliases one of bufs' buffers. wantSize, if not negative, is the plaintext
// size the caller expects; storedSize, if positive, the sealed size.
func (v *Vault) loadChunk(ctx context.Context, id string, wantSize, storedSize int64, bufs *chunkBufs) ([]byte, error) {
	if err := checkChunkID(id); err != nil {
		return nil, err
	}
	rc, err := v.openChunk(ctx, id, storedSize)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, &ChunkError{ID: id, Err: fmt.Errorf("missing from the vault: %w", err)}
	}
	if err != nil {
		return nil, &ChunkError{ID: id, Err: err}
	}
	// One byte more than expected lets readAllInto see the end without
	// growing the buffer.
	if storedSize > 0 && int64(cap(bufs.raw)) <= storedSize {
		bufs.raw = make([]byte, 0, min(storedSize, maxSealedChunk)+1)
	}
	bufs.raw, err = readAllInto(rc, bufs.raw, maxSealedChunk)
	rc.Close()
	if errors.Is(err, errTooLarge) {
		return nil, corruptChunk(id, "stored object is larger than any chunk")
	}
	if err != nil {
		return nil, &ChunkError{ID: id, Err: fmt.Errorf("read: %w", err)}
	}
	return v.openSealedChunk(id, wantSize, storedSize, bufs)
}

// openSealedChunk verifies the sealed chunk id in bufs.raw and returns its
// plaintext, as loadChunk does once it has read it.
func (v *Vault) openSealedChunk(id string, wantSize, storedSize int64, bufs *chunkBufs) ([]byte, error) {
	if storedSize > 0 && int64(len(bufs.raw)) != storedSize {
		return nil, corruptChunk(id, "stored object is %d bytes; when written it was %d", len(bufs.raw), storedSize)
	}
	payload, flags, err := v.open(bufs.raw, kindChunk, "chunk/"+id)
	if err != nil {
		return nil, corruptChunk(id, "%v", err)
	}
	plain := payload
	if flags != 0 {
		if plain, err = v.decompress(flags, payload, bufs.plain, wantSize); err != nil {
			return nil, corruptChunk(id, "%v", err)
		}
		bufs.plain = plain[:0]
	}
	if wantSize >= 0 && int64(len(plain)) != wantSize {
		return nil, corruptChunk(id, "holds %d bytes; the stream expects %d", len(plain), wantSize)
	}
	if bufs.streamSum {
		return plain, nil
	}
	sum := v.chunkID(v.idHasher.Clone(), plain)
	if hex.EncodeToString(sum[:]) != id {
		return nil, corruptChunk(id, "content does not match its id")
	}
	return plain, nil
}

// lookupAttempts is how many times a chunk is looked for, reading the
// index again before each new attempt, before it is reported missing.
// Garbage collection stores the index of the packs it repacks a chunk
// into before it deletes the pack the chunk was in, so an index read
// after the chunk was found missing there finds its new place; more
// than two attempts are for a chunk repacked again meanwhile.
const lookupAttempts = 3

// openChunk opens the sealed chunk id: a range of its pack, or its own
// object in a format 1 vault; where it is stored with sealed length
// stored, if positive, when it is stored in several places. When the
// chunk is not where this process believes (another process stored it,
// or garbage collection repacked it), it tries the chunk's other
// locations, then reads the index again and tries again.
func (v *Vault) openChunk(ctx context.Context, id string, stored int64) (io.ReadCloser, error) {
	sum, _ := decodeID(id)
	for attempt := 1; ; attempt++ {
		var rc io.ReadCloser
		var err error
		locs := v.index.locations(sum, stored)
		if len(locs) == 0 {
			rc, err = v.store.Get(ctx, chunkKey(id))
		}
		for _, loc := range locs {
			if rc, err = v.openLoc(ctx, id, loc); !errors.Is(err, blob.ErrNotExist) {
				break
			}
		}
		if attempt == lookupAttempts || !errors.Is(err, blob.ErrNotExist) {
			return rc, err
		}
		if err := v.refreshIndex(ctx); err != nil {
			return nil, err
		}
	}
}

// openLoc opens the sealed chunk id at loc.
func (v *Vault) openLoc(ctx context.Context, id string, loc chunkLoc) (io.ReadCloser, error) {
	if loc.pack == "" {
		return v.store.Get(ctx, chunkKey(id))
	}
	rc, err := v.store.GetRange(ctx, packKey(loc.pack), int64(loc.offset), int64(loc.length))
	if errors.Is(err, blob.ErrRange) {
		// the pack was cut short: what is left of the chunk, which the
		// caller finds too short or failing authentication
		rc, err = v.openShort(ctx, loc)
	}
	return rc, err
}

// openShort opens what is left of a chunk in a pack shorter than its
// index says.
func (v *Vault) openShort(ctx context.Context, loc chunkLoc) (io.ReadCloser, error) {
	info, err := v.store.Stat(ctx, packKey(loc.pack))
	if err != nil {
		return nil, err
	}
	left := min(max(info.Size-int64(loc.offset), 0), int64(loc.length))
	return v.store.GetRange(ctx, packKey(loc.pack), min(int64(loc.offset), info.Size), left)
}

var errTooLarge = errors.New("object too large")

// readAllInto reads r to its end into buf[:0], growing buf as needed up to
// max bytes.
func readAllInto(r io.Reader, buf []byte, max int) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512<<10)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			if len(buf) > max {
				return buf, errTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > max {
				return buf, errTooLarge
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// VerifyChunk fetches chunk id and checks it as a restore would: that it
// authenticates under the vault's keys and that its plaintext hashes to its
// id. Errors are *[ChunkError]s, matching [ErrCorrupt] or [blob.ErrNotExist].
func (v *Vault) VerifyChunk(ctx context.Context, id string) error {
	_, err := v.loadChunk(ctx, id, -1, 0, &chunkBufs{})
	return err
}

// ListChunks calls fn for every chunk in the vault, stopping at and
// returning fn's first error: the format 1 chunks in id order, then the
// chunks of every pack the store holds, pack by pack. A chunk stored in
// several places is listed once for each. It is meant for checks and
// reports; ChunkInfo.Pack says which chunks only go with their pack.
func (v *Vault) ListChunks(ctx context.Context, fn func(ChunkInfo) error) error {
	err := v.store.List(ctx, chunksPrefix, func(i blob.Info) error {
		rest := strings.TrimPrefix(i.Key, chunksPrefix)
		dir, id, ok := strings.Cut(rest, "/")
		if !ok || !validChunkID(id) || dir != id[:2] {
			return nil // not a chunk
		}
		return fn(ChunkInfo{ID: id, StoredSize: i.Size, ModTime: i.ModTime})
	})
	if err != nil {
		return fmt.Errorf("list chunks: %w", err)
	}
	if err := v.refreshIndex(ctx); err != nil {
		return fmt.Errorf("list chunks: %w", err)
	}
	packs, err := v.listPacks(ctx)
	if err != nil {
		return fmt.Errorf("list chunks: %w", err)
	}
	byPack := map[string][]ChunkInfo{}
	add := func(sum [32]byte, loc chunkLoc) {
		if info, ok := packs[loc.pack]; ok {
			// a pack cut short holds only what is left of a chunk
			stored := min(int64(loc.length), max(info.Size-int64(loc.offset), 0))
			byPack[loc.pack] = append(byPack[loc.pack], ChunkInfo{ID: hex.EncodeToString(sum[:]), StoredSize: stored, ModTime: info.ModTime, Pack: loc.pack})
		}
	}
	v.index.mu.RLock()
	for sum, loc := range v.index.chunks {
		add(sum, loc)
	}
	for sum, more := range v.index.more {
		for _, loc := range more {
			add(sum, loc)
		}
	}
	v.index.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(byPack)) {
		for _, c := range byPack[id] {
			if err := fn(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteChunk removes format 1 chunk id (one stored alone) from the
// vault, at once. Deleting a missing chunk is not an error; a chunk in a
// pack cannot be deleted alone. It is for repairs and tests, not garbage
// collection ([Vault.Collect]): callers must make sure no manifest or
// draft refers to it, and that no backup still being written may (writers
// skip storing chunks they believe the vault already has).
func (v *Vault) DeleteChunk(ctx context.Context, id string) error {
	if err := checkChunkID(id); err != nil {
		return err
	}
	var sum [32]byte
	hex.Decode(sum[:], []byte(id))
	locs := v.index.locations(sum, 0)
	if len(locs) > 0 && !slices.ContainsFunc(locs, func(l chunkLoc) bool { return l.pack == "" }) {
		return &ChunkError{ID: id, Err: fmt.Errorf("it is in pack %s, which is collected whole", locs[0].pack)}
	}
	v.index.remove(sum, "")
	if err := v.store.Delete(ctx, chunkKey(id)); err != nil {
		return &ChunkError{ID: id, Err: fmt.Errorf("delete: %w", err)}
	}
	return nil
}

// knownSet remembers the chunks a writer stored, so that a chunk repeated
// within its stream is stored once, and makes concurrent workers holding
// the same chunk wait for one to store it rather than each doing its own.
type knownSet struct {
	mu      sync.Mutex
	stored  map[[32]byte]int64 // id → sealed size
	pending map[[32]byte]chan struct{}
}

// maxKnown bounds the memory of a knownSet, about 100 bytes an entry; past
// it the set starts over, which costs only extra Stat calls.
const maxKnown = 1 << 20

func newKnownSet() *knownSet {
	return &knownSet{stored: make(map[[32]byte]int64), pending: make(map[[32]byte]chan struct{})}
}

// claim returns the stored size of a known chunk, or claims the chunk for
// the caller to check and upload (claimed true), after which the caller
// must call release. If another caller holds the claim, claim waits for it.
func (k *knownSet) claim(ctx context.Context, id [32]byte) (stored int64, claimed bool, err error) {
	for {
		k.mu.Lock()
		if size, ok := k.stored[id]; ok {
			k.mu.Unlock()
			return size, false, nil
		}
		wait, busy := k.pending[id]
		if !busy {
			k.pending[id] = make(chan struct{})
			k.mu.Unlock()
			return 0, true, nil
		}
		k.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, false, context.Cause(ctx)
		}
	}
}

// release ends a claim; ok says the chunk is now in the vault with stored
// bytes.
func (k *knownSet) release(id [32]byte, stored int64, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ok {
		if len(k.stored) >= maxKnown {
			clear(k.stored)
		}
		k.stored[id] = stored
	}
	close(k.pending[id])
	delete(k.pending, id)
}

func (k *knownSet) forget(id [32]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.stored, id)
}
