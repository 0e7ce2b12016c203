package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Packs (vault format 2). A writer seals each new chunk as format 1 did
// (the same header, key and additional data "chunk/<id>"), and appends it
// to the pack it is filling instead of storing it alone. A full pack is
// stored at packs/<xx>/<pack id>:
//
//	sealed chunk, sealed chunk, ...
//	pack header: the pack's entries, sealed ("packheader/<pack id>")
//	length of the sealed pack header, 4 bytes little-endian
//
// so a pack describes itself. Entries are 44 bytes each: the chunk id (32
// bytes), then its offset in the pack, its sealed length and its plaintext
// size, each 4 bytes little-endian. An index object, index/<index id>,
// sealed ("index/<index id>") and zstd-compressed, lists packs: for each,
// its id (32 bytes), its size (8 bytes) and its entries (a 4-byte count,
// then the entries). A writer stores an index of its packs every
// indexEvery packs and when it closes, always after the packs it lists:
// a chunk in an index is in the vault. Every vault keeps the union of the
// index objects in memory (vaultIndex), so that deduplication asks the
// store nothing, and a chunk is read with one ranged GET of its pack.
const (
	packsPrefix = "packs/"
	indexPrefix = "index/"
	// packTarget is the size at which a pack is closed and stored:
	// restic's 16 MiB, about 16 objects per GiB of new data.
	packTarget = 16 << 20
	// packBufSize is the largest a pack buffer grows: a pack just short
	// of its target plus the largest sealed chunk, its entry and the
	// header.
	packBufSize = packTarget + maxSealedChunk + 1<<20
	// packBufFirst is a new pack buffer's capacity; it doubles as a pack
	// fills.
	packBufFirst = 1 << 20
	// indexEvery is how many packs a writer stores between index objects.
	indexEvery = 64
	// packEntrySize is an entry's encoded length.
	packEntrySize = 32 + 4 + 4 + 4
	// maxPackHeader bounds a pack's sealed header.
	maxPackHeader = 8 << 20
	// maxIndexSize bounds an index object, sealed or not.
	maxIndexSize = 1 << 30
)

// packEntry locates one chunk in a pack.
type packEntry struct {
	id     [32]byte
	offset uint32
	length uint32 // sealed
	size   uint32 // plaintext
}

func appendEntries(b []byte, es []packEntry) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(es)))
	for _, e := range es {
		b = append(b, e.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.offset)
		b = binary.LittleEndian.AppendUint32(b, e.length)
		b = binary.LittleEndian.AppendUint32(b, e.size)
	}
	return b
}

// parseEntries reads a count and that many entries from the front of b.
func parseEntries(b []byte) ([]packEntry, []byte, error) {
	if len(b) < 4 {
		return nil, nil, errors.New("truncated entry count")
	}
	n := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n > len(b)/packEntrySize {
		return nil, nil, fmt.Errorf("%d entries do not fit in %d bytes", n, len(b))
	}
	es := make([]packEntry, n)
	for i := range es {
		copy(es[i].id[:], b)
		es[i].offset = binary.LittleEndian.Uint32(b[32:])
		es[i].length = binary.LittleEndian.Uint32(b[36:])
		es[i].size = binary.LittleEndian.Uint32(b[40:])
		if es[i].length < sealOverhead || es[i].length > maxSealedChunk || es[i].size == 0 || es[i].size > maxChunkSize {
			return nil, nil, fmt.Errorf("entry %d: sealed length %d, size %d out of range", i, es[i].length, es[i].size)
		}
		b = b[packEntrySize:]
	}
	return es, b, nil
}

func packKey(id string) string { return packsPrefix + id[:2] + "/" + id }

// listPacks lists the packs in the store, by id.
func (v *Vault) listPacks(ctx context.Context) (map[string]blob.Info, error) {
	packs := map[string]blob.Info{}
	err := v.store.List(ctx, packsPrefix, func(i blob.Info) error {
		rest := strings.TrimPrefix(i.Key, packsPrefix)
		if dir, id, ok := strings.Cut(rest, "/"); ok && validChunkID(id) && dir == id[:2] {
			packs[id] = i
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return packs, nil
}

func newObjectID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// packInfo is a stored pack as an index lists it.
type packInfo struct {
	id      string
	size    int64
	entries []packEntry
}

// encodeIndex is an index object's payload before compression.
func encodeIndex(packs []packInfo) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(packs)))
	for _, p := range packs {
		raw, _ := hex.DecodeString(p.id)
		b = append(b, raw...)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.size))
		b = appendEntries(b, p.entries)
	}
	return b
}

func decodeIndex(b []byte) ([]packInfo, error) {
	if len(b) < 4 {
		return nil, errors.New("truncated pack count")
	}
	n := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	packs := make([]packInfo, 0, min(n, len(b)/44))
	for i := range n {
		if len(b) < 40 {
			return nil, fmt.Errorf("pack %d: truncated", i)
		}
		p := packInfo{id: hex.EncodeToString(b[:32]), size: int64(binary.LittleEndian.Uint64(b[32:]))}
		var err error
		if p.entries, b, err = parseEntries(b[40:]); err != nil {
			return nil, fmt.Errorf("pack %s: %v", p.id, err)
		}
		for _, e := range p.entries {
			if int64(e.offset)+int64(e.length) > p.size {
				return nil, fmt.Errorf("pack %s: a chunk at %d+%d lies past its %d bytes", p.id, e.offset, e.length, p.size)
			}
		}
		packs = append(packs, p)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last pack", len(b))
	}
	return packs, nil
}

// putIndex stores an index object listing packs.
func (v *Vault) putIndex(ctx context.Context, packs []packInfo) (string, error) {
	id := newObjectID()
	plain := encodeIndex(packs)
	payload, flags := plain, byte(0)
	if z := v.enc.EncodeAll(plain, nil); len(z) < len(plain) {
		payload, flags = z, flagZstd
	}
	if len(payload) > maxIndexSize-sealOverhead {
		return "", fmt.Errorf("index of %d packs is %d bytes, more than the %d allowed", len(packs), len(payload), maxIndexSize)
	}
	sealed, _ := sealTo(make([]byte, 0, len(payload)+sealOverhead), v.keys.activeKey(), kindManifest, flags, payload, "index/"+id, nil)
	if err := v.store.Put(ctx, indexPrefix+id, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		return "", fmt.Errorf("store index %s: %w", id, err)
	}
	return id, nil
}

// getIndex reads and authenticates index object id.
func (v *Vault) getIndex(ctx context.Context, id string) ([]packInfo, error) {
	raw, err := readSmall(ctx, v.store, indexPrefix+id, maxIndexSize)
	if err != nil {
		return nil, err
	}
	payload, flags, err := v.open(raw, kindManifest, "index/"+id)
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: %v", ErrCorrupt, id, err)
	}
	if flags&flagZstd != 0 {
		if payload, err = v.mdec.DecodeAll(payload, nil); err != nil {
			return nil, fmt.Errorf("%w: index %s: decompress: %v", ErrCorrupt, id, err)
		}
	}
	packs, err := decodeIndex(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: %v", ErrCorrupt, id, err)
	}
	return packs, nil
}

// chunkLoc is where a chunk is stored: in a pack, or (pack "") as a
// format 1 object of its own.
type chunkLoc struct {
	pack   string
	offset uint32
	length uint32
	size   uint32
}

// vaultIndex is what this process knows to be in the vault: the chunks
// of every index object it has read, and the format 1 chunks it listed.
// A chunk may be stored in several places: by writers that raced to store
// it, or again by a writer that knew its first location condemned by
// garbage collection (condemned.go). Every location is kept, so that a
// stream reads each chunk where its stored size says, and the one lookup
// returns first is one that no loaded generation condemns, when there is
// one.
type vaultIndex struct {
	mu     sync.RWMutex
	chunks map[[32]byte]chunkLoc   // a location of every chunk
	more   map[[32]byte][]chunkLoc // its other locations, if any
	// condemned maps chunks to the packs ("" for a chunk stored alone)
	// where the generations this process loaded condemn them
	condemned map[[32]byte][]string
	indexes   map[string]bool // index objects read
	loose     bool            // format 1 chunks listed
	// refreshing serializes refreshes: a second waits for the first
	refreshing sync.Mutex
}

func newVaultIndex() *vaultIndex {
	return &vaultIndex{chunks: make(map[[32]byte]chunkLoc), more: make(map[[32]byte][]chunkLoc), indexes: make(map[string]bool)}
}

func (x *vaultIndex) lookup(id [32]byte) (chunkLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	loc, ok := x.chunks[id]
	return loc, ok
}

// lookupID is lookup by the chunk's id in hex; an id that is not one is
// in no index.
func (x *vaultIndex) lookupID(id string) (chunkLoc, bool) {
	sum, ok := decodeID(id)
	if !ok {
		return chunkLoc{}, false
	}
	return x.lookup(sum)
}

func decodeID(id string) ([32]byte, bool) {
	var sum [32]byte
	n, err := hex.Decode(sum[:], []byte(id))
	return sum, err == nil && n == len(sum)
}

// lookupSized returns a location of chunk id whose sealed length is
// stored, when stored is positive and one has it; otherwise as lookup.
func (x *vaultIndex) lookupSized(id [32]byte, stored int64) (chunkLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	loc, ok := x.chunks[id]
	if !ok || stored <= 0 || int64(loc.length) == stored {
		return loc, ok
	}
	for _, m := range x.more[id] {
		if int64(m.length) == stored {
			return m, true
		}
	}
	return loc, true
}

// lookupLive returns a location of chunk id that no loaded generation
// condemns: one a writer may deduplicate against.
func (x *vaultIndex) lookupLive(id [32]byte) (chunkLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	loc, ok := x.chunks[id]
	if !ok || !x.condemnedLocked(id, loc.pack) {
		return loc, ok
	}
	for _, m := range x.more[id] {
		if !x.condemnedLocked(id, m.pack) {
			return m, true
		}
	}
	return chunkLoc{}, false
}

// locations returns every location of chunk id this process knows,
// those of sealed length stored first.
func (x *vaultIndex) locations(id [32]byte, stored int64) []chunkLoc {
	x.mu.RLock()
	defer x.mu.RUnlock()
	loc, ok := x.chunks[id]
	if !ok {
		return nil
	}
	locs := append([]chunkLoc{loc}, x.more[id]...)
	if stored > 0 {
		slices.SortStableFunc(locs, func(a, b chunkLoc) int {
			return cmpBool(int64(b.length) == stored, int64(a.length) == stored)
		})
	}
	return locs
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func (x *vaultIndex) condemnedLocked(id [32]byte, pack string) bool {
	for _, p := range x.condemned[id] {
		if p == pack {
			return true
		}
	}
	return false
}

// add records packs this process stored (and indexed).
func (x *vaultIndex) add(indexID string, packs []packInfo) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(indexID, packs)
}

func (x *vaultIndex) addLocked(indexID string, packs []packInfo) {
	x.indexes[indexID] = true
	for _, p := range packs {
		for _, e := range p.entries {
			x.putLocked(e.id, chunkLoc{pack: p.id, offset: e.offset, length: e.length, size: e.size})
		}
	}
}

// putLocked records a location of chunk id, keeping first one that no
// generation condemns.
func (x *vaultIndex) putLocked(id [32]byte, loc chunkLoc) {
	cur, ok := x.chunks[id]
	if !ok || cur.pack == loc.pack {
		x.chunks[id] = loc
		return
	}
	for i, m := range x.more[id] {
		if m.pack == loc.pack {
			x.more[id][i] = loc
			return
		}
	}
	if x.condemnedLocked(id, cur.pack) && !x.condemnedLocked(id, loc.pack) {
		x.chunks[id], loc = loc, cur
	}
	x.more[id] = append(x.more[id], loc)
}

// remove drops the location of chunk id in pack ("" for a format 1
// chunk), as when a format 1 chunk is deleted.
func (x *vaultIndex) remove(id [32]byte, pack string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	more := x.more[id]
	if cur, ok := x.chunks[id]; ok && cur.pack == pack {
		if len(more) == 0 {
			delete(x.chunks, id)
			return
		}
		x.chunks[id], more = more[0], more[1:]
	} else {
		more = slices.DeleteFunc(more, func(m chunkLoc) bool { return m.pack == pack })
	}
	if len(more) == 0 {
		delete(x.more, id)
	} else {
		x.more[id] = more
	}
}

// setCondemned makes the locations gens condemn the ones writers do not
// deduplicate against, and puts a location none condemns first wherever
// a chunk has one.
func (x *vaultIndex) setCondemned(gens map[string]*generation) {
	c := make(map[[32]byte][]string)
	for _, g := range gens {
		for _, l := range g.locs {
			c[l.id] = append(c[l.id], l.pack)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.condemned = c
	for id, more := range x.more {
		cur := x.chunks[id]
		if !x.condemnedLocked(id, cur.pack) {
			continue
		}
		for i, m := range more {
			if !x.condemnedLocked(id, m.pack) {
				x.chunks[id], more[i] = m, cur
				break
			}
		}
	}
}

// refresh reads the index objects stored since the last refresh (by
// other processes), and, the first time, lists the format 1 chunks. When
// an index object it had read is gone (garbage collection replaced it),
// it starts over, so that no chunk is believed to be where it no longer
// is.
func (v *Vault) refreshIndex(ctx context.Context) error {
	x := v.index
	x.refreshing.Lock()
	defer x.refreshing.Unlock()
	// An index object listed and gone before it is read was replaced by
	// garbage collection, which stores the replacement first: when the
	// listing came before that, this refresh knows neither, and the
	// chunks they list seem missing until the next. So a refresh that
	// met one lists again, a few times, rather than end short.
	for range refreshRounds - 1 {
		short, err := v.refreshIndexOnce(ctx)
		if err != nil || !short {
			return err
		}
	}
	_, err := v.refreshIndexOnce(ctx)
	return err
}

// refreshRounds bounds the listings of one refreshIndex.
const refreshRounds = 4

// refreshIndexOnce refreshes the index from one listing, and reports
// whether an index object it listed was gone when it went to read it.
func (v *Vault) refreshIndexOnce(ctx context.Context) (short bool, err error) {
	x := v.index
	// the index objects known before the listing: one a writer of this
	// process stores while the listing runs is missing from it without
	// being gone, and taking it for gone read the whole index again (with
	// a few backups at once, at every session's opening)
	x.mu.RLock()
	known := maps.Clone(x.indexes)
	x.mu.RUnlock()
	var ids []string
	err = v.store.List(ctx, indexPrefix, func(i blob.Info) error {
		ids = append(ids, strings.TrimPrefix(i.Key, indexPrefix))
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("list index: %w", err)
	}
	x.mu.RLock()
	present := make(map[string]bool, len(ids))
	for _, id := range ids {
		present[id] = true
	}
	gone := false
	for id := range known {
		if !present[id] {
			gone = true
			break
		}
	}
	var fresh []string
	for _, id := range ids {
		if gone || !x.indexes[id] {
			fresh = append(fresh, id)
		}
	}
	loose := x.loose
	x.mu.RUnlock()

	next := make(map[[32]byte]chunkLoc)
	if !loose || gone {
		err := v.store.List(ctx, chunksPrefix, func(i blob.Info) error {
			rest := strings.TrimPrefix(i.Key, chunksPrefix)
			dir, id, ok := strings.Cut(rest, "/")
			if !ok || !validChunkID(id) || dir != id[:2] {
				return nil
			}
			var sum [32]byte
			hex.Decode(sum[:], []byte(id))
			next[sum] = chunkLoc{length: uint32(i.Size)}
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("list format 1 chunks: %w", err)
		}
	}
	read := make(map[string][]packInfo, len(fresh))
	for _, id := range fresh {
		packs, err := v.getIndex(ctx, id)
		if errors.Is(err, blob.ErrNotExist) {
			short = true // replaced since the listing
			continue
		}
		if err != nil {
			return false, err
		}
		read[id] = packs
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if gone {
		x.chunks, x.more, x.indexes = make(map[[32]byte]chunkLoc, len(x.chunks)), make(map[[32]byte][]chunkLoc), make(map[string]bool)
	}
	if !loose || gone {
		for sum, loc := range next {
			x.putLocked(sum, loc)
		}
	}
	x.loose = true
	for id, packs := range read {
		x.addLocked(id, packs)
	}
	return short, nil
}

// packer fills packs with a writer's sealed chunks and stores them, a few
// at once; every indexEvery packs, and when it is flushed, it stores an
// index of the packs stored since the last.
type packer struct {
	v       *Vault
	ctx     context.Context
	fail    func(error)
	bufs    chan []byte // free pack buffers: uploads in flight plus the one filling
	target  int         // the size at which a pack is stored
	uploads sync.WaitGroup

	mu      sync.Mutex // guards what follows
	buf     []byte     // the pack being filled; nil if none yet
	entries []packEntry
	stored  []packInfo // stored, not yet indexed
	pending int        // packs being stored
	packs   int        // packs stored in all
	indexed chan struct{}
}

func newPacker(ctx context.Context, v *Vault, uploads, target int, fail func(error)) *packer {
	p := &packer{v: v, ctx: ctx, fail: fail, bufs: make(chan []byte, uploads+1), target: target}
	for range uploads + 1 {
		p.bufs <- nil // allocated on first use
	}
	return p
}

// add appends a sealed chunk to the pack being filled, storing the pack
// once it reaches its target. It waits for a free buffer when uploads are
// behind, so that memory stays bounded.
func (p *packer) add(id [32]byte, sealed []byte, size int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf == nil {
		var b []byte
		select {
		case b = <-p.bufs:
		case <-p.ctx.Done():
			return context.Cause(p.ctx)
		}
		if b == nil {
			// small at first: a log backup of a few pages needs no pack
			// buffer of 17 MiB, which the allocator would zero for each
			b = make([]byte, 0, min(packBufFirst, p.bufCap()))
		}
		p.buf = b[:0]
	}
	p.entries = append(p.entries, packEntry{id: id, offset: uint32(len(p.buf)), length: uint32(len(sealed)), size: uint32(size)})
	p.buf = p.grow(p.buf, len(sealed))
	p.buf = append(p.buf, sealed...)
	if len(p.buf) >= p.target {
		p.sealLocked()
	}
	return nil
}

// bufCap is the largest a pack buffer grows: a pack just short of its
// target plus the largest sealed chunk, its entry and the header.
func (p *packer) bufCap() int { return min(packBufSize, p.target+p.v.chunkBufSize()+1<<20) }

// grow returns buf with room for n more bytes: a buffer that outgrows
// its first packBufFirst bytes goes straight to bufCap (and past it only
// by what n needs). Doubling instead copied about 30 MiB into fresh
// memory for each new buffer, which BenchmarkBackup1GiB's profile showed
// at 8% of the streamer's CPU.
func (p *packer) grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	c := max(2*cap(buf), len(buf)+n)
	if cap(buf) >= packBufFirst {
		c = max(p.bufCap(), len(buf)+n)
	}
	c = min(c, max(p.bufCap(), len(buf)+n))
	nb := make([]byte, len(buf), c)
	copy(nb, buf)
	return nb
}

// sealLocked closes the pack being filled and starts storing it.
func (p *packer) sealLocked() {
	if len(p.entries) == 0 {
		return
	}
	id := newObjectID()
	hdr := appendEntries(nil, p.entries)
	// the header is sealed in place, after the chunks, and its length
	// follows it
	p.buf = p.grow(p.buf, len(hdr)+sealOverhead+4)
	start := len(p.buf)
	buf, _ := sealTo(p.buf[start:start:cap(p.buf)], p.v.keys.activeKey(), kindManifest, 0, hdr, "packheader/"+id, nil)
	buf = p.buf[:start+len(buf)]
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(buf)-start))
	info := packInfo{id: id, size: int64(len(buf)), entries: p.entries}
	p.buf, p.entries = nil, nil
	p.pending++
	p.uploads.Go(func() {
		err := p.v.store.Put(p.ctx, packKey(id), bytes.NewReader(buf), int64(len(buf)))
		p.bufs <- buf[:0]
		p.mu.Lock()
		defer p.mu.Unlock()
		p.pending--
		if err != nil {
			p.fail(fmt.Errorf("store pack %s: %w", id, err))
			return
		}
		p.stored = append(p.stored, info)
		p.packs++
		if len(p.stored) >= indexEvery {
			p.indexLocked()
		}
	})
}

// indexLocked stores an index of the packs stored and not yet indexed,
// and makes them known to the vault.
func (p *packer) indexLocked() {
	if len(p.stored) == 0 {
		return
	}
	packs := p.stored
	p.stored = nil
	id, err := p.v.putIndex(p.ctx, packs)
	if err != nil {
		p.fail(err)
		return
	}
	p.v.index.add(id, packs)
}

// flush stores the last pack and waits for every upload, then indexes
// what is not indexed yet. After it, every chunk added is in the vault
// and in its index, unless the stream failed.
func (p *packer) flush() {
	p.mu.Lock()
	p.sealLocked()
	p.mu.Unlock()
	p.uploads.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() == nil {
		p.indexLocked()
	}
}

// Location is where a chunk is stored: Length bytes at Offset in the
// object Key (a pack, or the chunk's own object in a format 1 vault).
type Location struct {
	Key            string
	Offset, Length int64
}

// Locate says where chunk id is stored, as far as this process knows (it
// does not ask the store), for reports and tools.
func (v *Vault) Locate(id string) (Location, bool) {
	if !validChunkID(id) {
		return Location{}, false
	}
	loc, ok := v.index.lookupID(id)
	switch {
	case !ok:
		return Location{}, false
	case loc.pack == "":
		return Location{Key: chunkKey(id), Length: int64(loc.length)}, true
	}
	return Location{Key: packKey(loc.pack), Offset: int64(loc.offset), Length: int64(loc.length)}, true
}
