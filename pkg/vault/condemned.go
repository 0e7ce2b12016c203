package vault

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// Condemned generations. A collection that finds chunks no manifest or
// draft names records where they are stored in a generation object,
// condemned/<generation id>, sealed ("condemned/<generation id>") and
// zstd-compressed:
//
//	count of locations, 4 bytes little-endian
//	each: chunk id (32 bytes), pack id (32 bytes; zero for a chunk
//	stored alone, format 1)
//	count of unlisted packs, 4 bytes little-endian
//	each: pack id (32 bytes), a pack no index listed
//
// A generation condemns locations, not chunk ids: a chunk stored again
// (in a newer pack, by a writer that knew of the generation) is not
// condemned there. See collect.go for how generations are processed.
const (
	condemnedPrefix = "condemned/"
	// maxGenerationSize bounds a generation object, sealed or not.
	maxGenerationSize = 1 << 30
)

// condemnedLoc is a condemned location: chunk id in pack (hex), or ""
// for a chunk stored alone.
type condemnedLoc struct {
	id   [32]byte
	pack string
}

// generation is one condemned generation.
type generation struct {
	id       string
	modTime  time.Time // when it was stored, by the store's clock
	locs     []condemnedLoc
	unlisted []string // packs no index listed when it was written
}

func encodeGeneration(g *generation) []byte {
	b := make([]byte, 0, 8+len(g.locs)*64+len(g.unlisted)*32)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(g.locs)))
	var zero [32]byte
	for _, l := range g.locs {
		b = append(b, l.id[:]...)
		if l.pack == "" {
			b = append(b, zero[:]...)
		} else {
			raw, _ := hex.DecodeString(l.pack)
			b = append(b, raw...)
		}
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(g.unlisted)))
	for _, p := range g.unlisted {
		raw, _ := hex.DecodeString(p)
		b = append(b, raw...)
	}
	return b
}

func decodeGeneration(b []byte) (locs []condemnedLoc, unlisted []string, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("truncated location count")
	}
	n := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n > len(b)/64 {
		return nil, nil, fmt.Errorf("%d locations do not fit in %d bytes", n, len(b))
	}
	// pack ids are interned: a generation names a few packs many times
	packs := map[[32]byte]string{}
	var zero [32]byte
	locs = make([]condemnedLoc, n)
	for i := range locs {
		copy(locs[i].id[:], b)
		var p [32]byte
		copy(p[:], b[32:64])
		if p != zero {
			s, ok := packs[p]
			if !ok {
				s = hex.EncodeToString(p[:])
				packs[p] = s
			}
			locs[i].pack = s
		}
		b = b[64:]
	}
	if len(b) < 4 {
		return nil, nil, errors.New("truncated unlisted pack count")
	}
	n = int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n != len(b)/32 || len(b)%32 != 0 {
		return nil, nil, fmt.Errorf("%d unlisted packs in %d bytes", n, len(b))
	}
	for range n {
		unlisted = append(unlisted, hex.EncodeToString(b[:32]))
		b = b[32:]
	}
	return locs, unlisted, nil
}

// putGeneration seals and stores g, giving it a new id.
func (v *Vault) putGeneration(ctx context.Context, g *generation) error {
	g.id = newObjectID()
	plain := encodeGeneration(g)
	payload, flags := plain, byte(0)
	if z := v.enc.EncodeAll(plain, nil); len(z) < len(plain) {
		payload, flags = z, flagZstd
	}
	if len(payload) > maxGenerationSize-sealOverhead {
		return fmt.Errorf("condemned generation of %d locations is %d bytes, more than the %d allowed", len(g.locs), len(payload), maxGenerationSize)
	}
	name := condemnedPrefix + g.id
	sealed, _ := sealTo(make([]byte, 0, len(payload)+sealOverhead), v.keys.activeKey(), kindManifest, flags, payload, name, nil)
	if err := v.store.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		return fmt.Errorf("store condemned generation %s: %w", g.id, err)
	}
	return nil
}

// getGeneration reads and authenticates generation id, stored at modTime.
func (v *Vault) getGeneration(ctx context.Context, id string, modTime time.Time) (*generation, error) {
	name := condemnedPrefix + id
	raw, err := readSmall(ctx, v.store, name, maxGenerationSize)
	if err != nil {
		return nil, err
	}
	payload, flags, err := v.open(raw, kindManifest, name)
	if err != nil {
		return nil, fmt.Errorf("%w: condemned generation %s: %v", ErrCorrupt, id, err)
	}
	if flags&flagZstd != 0 {
		if payload, err = v.mdec.DecodeAll(payload, nil); err != nil {
			return nil, fmt.Errorf("%w: condemned generation %s: decompress: %v", ErrCorrupt, id, err)
		}
	}
	g := &generation{id: id, modTime: modTime}
	if g.locs, g.unlisted, err = decodeGeneration(payload); err != nil {
		return nil, fmt.Errorf("%w: condemned generation %s: %v", ErrCorrupt, id, err)
	}
	return g, nil
}

// condemnedState is the condemned generations this process loaded, which
// its writers do not deduplicate against.
type condemnedState struct {
	mu   sync.Mutex // held while loading
	gens map[string]*generation
	// lastLoad is when the last load that succeeded started listing the
	// generations, and lastFull when the last one that also read the
	// index again did, on this process's monotonic clock
	lastLoad, lastFull time.Time
	// reused counts the loads that kept the index as it was (for tests)
	reused atomic.Int64
}

// indexRelist bounds how long the loads of a writer session may go
// without reading the index again: new chunks other processes stored
// since are not deduplicated against until it is read (indexCurrent).
const indexRelist = 30 * time.Second

// indexCurrent reports whether the index this process holds can serve a
// writer session whose load, started at now, listed the generations
// next, without being read again. It can when next is the set of
// generations the last load found, the index was read within
// indexRelist, and a writer session of this process (the one loading,
// often, which waited for the last load to end) was stored before the
// last load started and is open still. The index must be read again
// when a generation processed since it was read has deleted locations
// it lists (so the writers do not deduplicate against them). A
// generation processed since the last load would be missing from next if
// the last load knew it. One stored after the last load started cannot
// have been processed before this load listed the generations: that
// session held it back all along, knowing no generation when it was
// first stored and, later, only those its own load listed (collect.go).
// One stored before the last load started, that load listed, or it was
// processed before, and that load's index was current.
func (v *Vault) indexCurrent(next map[string]*generation, now time.Time) bool {
	c := &v.condemned
	if c.lastLoad.IsZero() || now.Sub(c.lastFull) > indexRelist || len(next) != len(c.gens) {
		return false
	}
	for id := range next {
		if _, ok := c.gens[id]; !ok {
			return false
		}
	}
	return v.writing.openBefore(c.lastLoad)
}

// openSessions are this process's open writer sessions, with when each
// was first stored (monotonic clock), for indexCurrent.
type openSessions struct {
	mu     sync.Mutex
	opened map[*Session]time.Time
}

func (o *openSessions) add(s *Session, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opened == nil {
		o.opened = map[*Session]time.Time{}
	}
	o.opened[s] = at
}

func (o *openSessions) remove(s *Session) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.opened, s)
}

// openBefore reports whether a session first stored before t is open
// still, and valid for long enough that no collector can have taken it
// for dead.
func (o *openSessions) openBefore(t time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, at := range o.opened {
		switch {
		case s.Err() != nil:
			delete(o.opened, s)
		case at.Before(t) && time.Now().Before(s.validUntil()):
			return true
		}
	}
	return false
}

// loadCondemned reads the condemned generations in the store into this
// process's view, so that from its return no writer of the process
// deduplicates against a location they condemn, and reads the index
// again; it returns the generations' ids. Generations no longer in the
// store (processed since) are forgotten, but only once the index has been
// read again: processing replaces the index objects that listed the
// locations it deleted before it deletes the generation, so until the
// index is read again this process may still believe them there.
//
// A writer's session (reuse set) keeps the index this process holds,
// unread, when indexCurrent says it is safe to.
func (v *Vault) loadCondemned(ctx context.Context, reuse bool) ([]string, error) {
	c := &v.condemned
	c.mu.Lock()
	defer c.mu.Unlock()
	started := time.Now()
	type listed struct {
		id      string
		modTime time.Time
	}
	var ids []listed
	err := v.store.List(ctx, condemnedPrefix, func(i blob.Info) error {
		id := strings.TrimPrefix(i.Key, condemnedPrefix)
		if validChunkID(id) {
			ids = append(ids, listed{id, i.ModTime})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list condemned generations: %w", err)
	}
	next := make(map[string]*generation, len(ids))
	for _, l := range ids {
		if g, ok := c.gens[l.id]; ok {
			next[l.id] = g
			continue
		}
		g, err := v.getGeneration(ctx, l.id, l.modTime)
		if errors.Is(err, blob.ErrNotExist) {
			continue // processed since the listing
		}
		if err != nil {
			return nil, err
		}
		next[l.id] = g
	}
	if reuse && v.indexCurrent(next, started) {
		c.gens, c.lastLoad = next, started
		c.reused.Add(1)
		return slices.Sorted(maps.Keys(next)), nil
	}
	both := maps.Clone(c.gens)
	if both == nil {
		both = map[string]*generation{}
	}
	maps.Copy(both, next)
	v.index.setCondemned(both)
	if err := v.refreshIndex(ctx); err != nil {
		return nil, err
	}
	c.gens, c.lastLoad, c.lastFull = next, started, started
	v.index.setCondemned(next)
	return slices.Sorted(maps.Keys(next)), nil
}

// loadedGenerations returns the generations ids, as this process loaded
// them; ids it no longer has are left out.
func (v *Vault) loadedGenerations(ids []string) []*generation {
	c := &v.condemned
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*generation
	for _, id := range ids {
		if g, ok := c.gens[id]; ok {
			out = append(out, g)
		}
	}
	return out
}
