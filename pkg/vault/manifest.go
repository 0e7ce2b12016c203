package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Manifest is one recovery point: the chunks of a backup stream, in order,
// with the caller's metadata. Storing it with [Vault.PutManifest] is the
// commit; a stream without a manifest does not exist, and its chunks are
// garbage once a grace period passes.
type Manifest struct {
	// ID names the manifest; see [Vault.PutManifest] for what it may be.
	ID string `json:"id"`
	// CreatedAt is when the recovery point was made.
	CreatedAt time.Time `json:"created_at"`
	// Size and Checksum are the stream's, as in [Result]. A striped
	// recovery point has no Checksum of its own: each stripe has one.
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
	// Chunks are the stream's chunks in order; for a striped recovery
	// point, the first stripe's chunks, then the second's, and so on.
	Chunks []ChunkRef `json:"chunks"`
	// Stripes, when there are two or more, cut Chunks into the streams of
	// a backup written to several devices at once (SQL Server's stripes,
	// one per URL), in the order of the devices. A manifest without
	// Stripes is one stream.
	Stripes []Stripe `json:"stripes,omitempty"`
	// Meta is the caller's metadata, kept as is. The vault does not look at
	// it: for coffer, the backup's type, LSNs, server, database and times.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// Stripe is one stream of a striped recovery point: the next Chunks
// chunks of its manifest, Size bytes long, with its own Checksum as in
// [Result].
type Stripe struct {
	Chunks   int    `json:"chunks"`
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
}

// Streams returns the streams m holds, in order: its stripes, or its one
// stream when it has none. The chunk slices share m.Chunks.
func (m *Manifest) Streams() []Stream {
	if len(m.Stripes) == 0 {
		return []Stream{{Chunks: m.Chunks, Size: m.Size, Checksum: m.Checksum}}
	}
	out := make([]Stream, 0, len(m.Stripes))
	at := 0
	for _, st := range m.Stripes {
		// at+st.Chunks could overflow: a stored manifest's stripes are
		// only checked when it is loaded, not when a caller builds one
		end := at + min(max(st.Chunks, 0), len(m.Chunks)-at)
		out = append(out, Stream{Chunks: m.Chunks[at:end:end], Size: st.Size, Checksum: st.Checksum})
		at = end
	}
	return out
}

// Stream is one ordered stream of a manifest: see [Manifest.Streams].
type Stream struct {
	Chunks   []ChunkRef
	Size     int64
	Checksum string
}

// checkStripes reports whether m's stripes cut its chunks exactly.
func (m *Manifest) checkStripes() error {
	if len(m.Stripes) == 0 {
		return nil
	}
	if len(m.Stripes) == 1 {
		return errors.New("a manifest with stripes has two or more")
	}
	n := 0
	for k, st := range m.Stripes {
		if st.Chunks <= 0 {
			return fmt.Errorf("stripe %d has no chunk", k+1)
		}
		if st.Chunks > len(m.Chunks)-n {
			return fmt.Errorf("stripe %d has %d chunks; the manifest has %d left", k+1, st.Chunks, len(m.Chunks)-n)
		}
		var size int64
		for _, c := range m.Chunks[n : n+st.Chunks] {
			size += c.Size
		}
		if size != st.Size {
			return fmt.Errorf("stripe %d: its chunks add up to %d bytes, but it says %d", k+1, size, st.Size)
		}
		n += st.Chunks
	}
	if n != len(m.Chunks) {
		return fmt.Errorf("the stripes hold %d chunks, the manifest %d", n, len(m.Chunks))
	}
	return nil
}

const (
	manifestsPrefix = "manifests/"
	draftsPrefix    = "drafts/"
	// maxManifestSize bounds a manifest, sealed or not: at about 120 bytes
	// a chunk, room for a stream of several tens of terabytes.
	maxManifestSize = 1 << 30
	maxManifestID   = 128
	// statConcurrency bounds the Stat calls PutManifest makes at once.
	statConcurrency = 16
)

// ValidateManifestID reports whether id can name a manifest: 1 to 128
// letters, digits, '.', '_' and '-', not starting with '.'.
func ValidateManifestID(id string) error {
	if id == "" || len(id) > maxManifestID {
		return fmt.Errorf("invalid manifest id %q: want 1 to %d characters", id, maxManifestID)
	}
	if id[0] == '.' {
		return fmt.Errorf("invalid manifest id %q: starts with a dot", id)
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("invalid manifest id %q: character %q not allowed", id, c)
		}
	}
	return nil
}

// PutManifest stores m as manifest id, encrypted, replacing any manifest
// of that id (so a retried commit is harmless). m.ID must be id or empty.
//
// It is the commit of a recovery point, so it first checks that m is
// consistent (its chunk sizes add up to its size) and that every chunk it
// refers to is in the vault, with the stored size recorded; if any is
// missing it stores nothing and returns an error naming one, a *[ChunkError]
// matching [blob.ErrNotExist].
func (v *Vault) PutManifest(ctx context.Context, id string, m *Manifest) error {
	if err := v.putManifest(ctx, id, m); err != nil {
		return fmt.Errorf("put manifest %s: %w", id, err)
	}
	return nil
}

func (v *Vault) putManifest(ctx context.Context, id string, m *Manifest) error {
	mc, err := checkManifest(id, m)
	if err != nil {
		return err
	}
	if err := v.checkChunksExist(ctx, mc.Chunks); err != nil {
		return err
	}
	return v.storeManifest(ctx, manifestsPrefix+id, manifestName(id), mc)
}

// checkManifest returns a copy of m with its ID set to id, after checking
// that id is valid, that m's chunks are well formed and add up to its
// size, and that its stripes cut them exactly.
func checkManifest(id string, m *Manifest) (*Manifest, error) {
	if err := ValidateManifestID(id); err != nil {
		return nil, err
	}
	if m.ID != "" && m.ID != id {
		return nil, fmt.Errorf("manifest holds id %q", m.ID)
	}
	mc := *m
	mc.ID = id
	var total int64
	for i, c := range mc.Chunks {
		if err := checkChunkID(c.ID); err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		if c.Size <= 0 || c.Size > maxChunkSize {
			return nil, fmt.Errorf("chunk %d (%s): size %d out of range", i, c.ID, c.Size)
		}
		total += c.Size
	}
	if total != mc.Size {
		return nil, fmt.Errorf("chunks add up to %d bytes, but the manifest says %d", total, mc.Size)
	}
	if err := mc.checkStripes(); err != nil {
		return nil, err
	}
	return &mc, nil
}

// storeManifest seals m as the object name and stores it at key.
func (v *Vault) storeManifest(ctx context.Context, key, name string, m *Manifest) error {
	plain, err := json.Marshal(m)
	if err != nil {
		return err
	}
	payload, flags := plain, byte(0)
	if z := v.enc.EncodeAll(plain, nil); len(z) < len(plain) {
		payload, flags = z, flagZstd
	}
	if len(payload) > maxManifestSize-sealOverhead {
		return fmt.Errorf("manifest is %d bytes, more than the %d allowed", len(payload), maxManifestSize)
	}
	sealed, _ := sealTo(make([]byte, 0, len(payload)+sealOverhead), v.keys.activeKey(), kindManifest, flags, payload, name, nil)
	return v.store.Put(ctx, key, bytes.NewReader(sealed), int64(len(sealed)))
}

func manifestName(id string) string { return "manifest/" + id }

// checkChunksExist checks that every distinct chunk of chunks is in the
// vault, with the stored size recorded: in the index, in a pack that the
// store has, or as a format 1 object the store has. When a chunk is not
// in the index, or not where the index says (another process stored it,
// or garbage collection repacked it), it reads the index again and checks
// again, up to lookupAttempts times in all. It Stats each pack and format
// 1 chunk once, a few at a time, and returns the first problem found.
func (v *Vault) checkChunksExist(ctx context.Context, chunks []ChunkRef) error {
	for attempt := 1; ; attempt++ {
		err := v.checkChunksOnce(ctx, chunks)
		if attempt == lookupAttempts || !errors.Is(err, blob.ErrNotExist) && !errors.Is(err, ErrCorrupt) {
			return err
		}
		if err := v.refreshIndex(ctx); err != nil {
			return err
		}
	}
}

func (v *Vault) checkChunksOnce(ctx context.Context, chunks []ChunkRef) error {
	// the locations of each chunk that have its stored size
	type want struct {
		ref  ChunkRef
		locs []chunkLoc
	}
	var wants []want
	seen := make(map[string]bool, len(chunks))
	objects := make(map[string]chunkLoc) // key -> a location there
	for _, c := range chunks {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		sum, _ := decodeID(c.ID)
		locs := v.index.locations(sum, c.StoredSize)
		if len(locs) == 0 {
			return &ChunkError{ID: c.ID, Err: fmt.Errorf("missing from the vault: %w", blob.ErrNotExist)}
		}
		if c.StoredSize > 0 {
			n := 0
			for n < len(locs) && int64(locs[n].length) == c.StoredSize {
				n++
			}
			if n == 0 {
				return corruptChunk(c.ID, "stored object is %d bytes; when written it was %d", locs[0].length, c.StoredSize)
			}
			locs = locs[:n]
		}
		for _, l := range locs {
			objects[locKey(c.ID, l)] = l
		}
		wants = append(wants, want{c, locs})
	}
	// one Stat per pack, one per format 1 chunk
	type statResult struct {
		ok  bool
		err error
	}
	results := make(map[string]statResult, len(objects))
	var mu sync.Mutex
	chunkOf := make(map[string]string, len(objects))
	for _, w := range wants {
		for _, l := range w.locs {
			chunkOf[locKey(w.ref.ID, l)] = w.ref.ID
		}
	}
	err := concurrently(ctx, statConcurrency, slices.Collect(maps.Keys(objects)), func(ctx context.Context, key string) error {
		loc := objects[key]
		info, err := v.store.Stat(ctx, key)
		r := statResult{ok: err == nil, err: err}
		switch {
		case errors.Is(err, blob.ErrNotExist):
			r.err = nil
		case err != nil:
			return &ChunkError{ID: chunkOf[key], Err: fmt.Errorf("check: %w", err)}
		case loc.pack == "" && info.Size != int64(loc.length):
			r.ok = false
			r.err = fmt.Errorf("%w: stored object is %d bytes; when written it was %d", ErrCorrupt, info.Size, loc.length)
		}
		mu.Lock()
		results[key] = r
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	for _, w := range wants {
		var problem error
		found := false
		for _, l := range w.locs {
			r := results[locKey(w.ref.ID, l)]
			if r.ok {
				found = true
				break
			}
			if r.err != nil && problem == nil {
				problem = r.err
			}
		}
		switch {
		case found:
		case problem != nil:
			return &ChunkError{ID: w.ref.ID, Err: problem}
		default:
			return &ChunkError{ID: w.ref.ID, Err: fmt.Errorf("missing from the vault (%s): %w", locKey(w.ref.ID, w.locs[0]), blob.ErrNotExist)}
		}
	}
	return nil
}

// concurrently calls fn for each of keys, at most n at once; the first
// error ends the calls not started, cancels the context of those running,
// and is returned once they return.
func concurrently(ctx context.Context, n int, keys []string, fn func(ctx context.Context, key string) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, key := range keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, key); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// locKey is the key of the object that holds chunk id at loc.
func locKey(id string, loc chunkLoc) string {
	if loc.pack == "" {
		return chunkKey(id)
	}
	return packKey(loc.pack)
}

// GetManifest reads and verifies manifest id. A missing manifest gives an
// error matching [blob.ErrNotExist]; one that was altered, truncated or
// stored under another id, one matching [ErrCorrupt].
func (v *Vault) GetManifest(ctx context.Context, id string) (*Manifest, error) {
	m, err := v.getManifest(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", id, err)
	}
	return m, nil
}

func (v *Vault) getManifest(ctx context.Context, id string) (*Manifest, error) {
	if err := ValidateManifestID(id); err != nil {
		return nil, err
	}
	return v.loadManifest(ctx, manifestsPrefix+id, manifestName(id), id)
}

// loadManifest reads, opens and checks the manifest sealed as the object
// name at key, which must hold manifest id.
func (v *Vault) loadManifest(ctx context.Context, key, name, id string) (*Manifest, error) {
	raw, err := readSmall(ctx, v.store, key, maxManifestSize)
	if err != nil {
		return nil, err
	}
	return v.decodeManifest(raw, name, id)
}

// decodeManifest opens raw, the manifest sealed as the object name, in
// place, and checks that it holds manifest id, as loadManifest does once
// it has read it.
func (v *Vault) decodeManifest(raw []byte, name, id string) (*Manifest, error) {
	payload, flags, err := v.open(raw, kindManifest, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if flags&flagZstd != 0 {
		payload, err = v.mdec.DecodeAll(payload, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
		}
	}
	var m Manifest
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrCorrupt, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("%w: holds manifest %q", ErrCorrupt, m.ID)
	}
	if err := m.checkStripes(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &m, nil
}

// ListManifests calls fn with the id of every manifest, in lexical order,
// stopping at and returning fn's first error.
func (v *Vault) ListManifests(ctx context.Context, fn func(id string) error) error {
	if err := v.listIDs(ctx, manifestsPrefix, "", fn); err != nil {
		return fmt.Errorf("list manifests: %w", err)
	}
	return nil
}

// listIDs calls fn with the name, after dir, of each object under dir
// whose name begins with prefix and is a valid manifest id; other
// objects there are not the vault's.
func (v *Vault) listIDs(ctx context.Context, dir, prefix string, fn func(id string) error) error {
	return v.store.List(ctx, dir+prefix, func(i blob.Info) error {
		id := strings.TrimPrefix(i.Key, dir)
		if ValidateManifestID(id) != nil {
			return nil
		}
		return fn(id)
	})
}

// DeleteManifest removes manifest id; its chunks stay until garbage
// collection. Deleting a missing manifest is not an error.
func (v *Vault) DeleteManifest(ctx context.Context, id string) error {
	if err := ValidateManifestID(id); err != nil {
		return fmt.Errorf("delete manifest: %w", err)
	}
	if err := v.store.Delete(ctx, manifestsPrefix+id); err != nil {
		return fmt.Errorf("delete manifest %s: %w", id, err)
	}
	return nil
}

// PutDraft stores m as the draft of manifest id: the chunk list of a
// stream whose writer is closed and whose recovery point is not
// committed yet, too long to travel in a message (about 80 bytes a
// chunk). It checks m as PutManifest does, but not that its chunks are in
// the vault: the commit does. A draft is not a recovery point; it keeps
// its chunks from garbage collection until [Vault.DeleteDraft] removes it
// (after the commit, or when its backup is given up). Storing a draft
// again replaces it.
func (v *Vault) PutDraft(ctx context.Context, id string, m *Manifest) error {
	mc, err := checkManifest(id, m)
	if err == nil {
		err = v.storeManifest(ctx, draftsPrefix+id, draftName(id), mc)
	}
	if err != nil {
		return fmt.Errorf("put draft %s: %w", id, err)
	}
	return nil
}

// GetDraft reads and verifies draft id, with the errors of GetManifest.
func (v *Vault) GetDraft(ctx context.Context, id string) (*Manifest, error) {
	err := ValidateManifestID(id)
	var m *Manifest
	if err == nil {
		m, err = v.loadManifest(ctx, draftsPrefix+id, draftName(id), id)
	}
	if err != nil {
		return nil, fmt.Errorf("get draft %s: %w", id, err)
	}
	return m, nil
}

// ListDrafts calls fn with the id of every draft and when it was stored,
// in lexical order of id, stopping at and returning fn's first error.
func (v *Vault) ListDrafts(ctx context.Context, fn func(id string, stored time.Time) error) error {
	err := v.store.List(ctx, draftsPrefix, func(i blob.Info) error {
		id := strings.TrimPrefix(i.Key, draftsPrefix)
		if ValidateManifestID(id) != nil {
			return nil // not a draft
		}
		return fn(id, i.ModTime)
	})
	if err != nil {
		return fmt.Errorf("list drafts: %w", err)
	}
	return nil
}

// DeleteDraft removes draft id; deleting a missing draft is not an error.
func (v *Vault) DeleteDraft(ctx context.Context, id string) error {
	if err := ValidateManifestID(id); err != nil {
		return fmt.Errorf("delete draft: %w", err)
	}
	if err := v.store.Delete(ctx, draftsPrefix+id); err != nil {
		return fmt.Errorf("delete draft %s: %w", id, err)
	}
	return nil
}

func draftName(id string) string { return "draft/" + id }
