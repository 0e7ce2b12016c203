package vault

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

const (
	// maxIndexObjects is how many index objects a collection leaves be;
	// past it, it merges them, packsPerIndex packs an object, so that
	// reading the index stays a few requests.
	maxIndexObjects = 32
	packsPerIndex   = 4096
)

// Garbage collection is two-phase, and safe against writers in other
// processes, which share nothing with the collector but the store:
//
//  1. A collection condemns what no root needs: the locations (pack and
//     chunk) of chunks that no manifest and no draft names, further
//     copies of chunks stored twice, and packs no index lists. It records
//     them in a new generation object (condemned.go). A writer session
//     that opens after that object is stored reads it, and its writers
//     store those chunks again rather than deduplicate against them.
//  2. A later collection processes the generation, deleting its
//     locations (repacking the packs that hold other chunks too), once
//     every live session knows it: no writer that may have deduplicated
//     against a condemned location is still running. Just before, it
//     lists the roots again, and spares the chunks they name: a chunk
//     condemned while a writer that started earlier was deduplicating
//     against it is simply un-condemned. It spares any location a
//     generation condemns as a further copy too, unless a copy of the same
//     stored size that no generation condemns is left.
//
// Sessions (session.go) say which writers run, and which generations each
// knew when it started; one not refreshed within its lease is a dead
// writer, which collection ignores and deletes. The order of the steps
// is what makes this safe with no clock but the store's: a writer stores
// its session before it reads the generations, and a collector stores a
// generation before it reads the sessions (the next time it runs), so at
// least one of the two sees the other; a writer's draft is stored before
// its session is deleted, and a collector reads the sessions before it
// reads the roots; a commit stores its manifest before it deletes its
// draft, and a collector reads the drafts before it lists the manifests.
//
// Collections run one at a time: each replaces index objects with copies
// of what it read, and two at once could bring back the listing of a
// pack the other deleted, which a writer would then deduplicate against.
// A collection's session says it is one, and a collection that finds
// another's live session gives way (both do, should two start at the
// same instant; a dead one's is waited for until its lease runs out).

// ErrCollecting is matched by the error Collect returns when another
// collection is running (in this process or another): collections run
// one at a time, and one that finds another gives way, changing nothing.
var ErrCollecting = errors.New("another garbage collection is running")

// CollectOptions tunes a collection. The zero value is ready to use.
type CollectOptions struct {
	// MinAge is how long, by the store's clock, a condemned generation
	// must have existed before a collection deletes what it condemns.
	// Zero means the next collection may, once every writer that started
	// before the generation was stored has finished.
	MinAge time.Duration
	// DraftTTL is how old, by the store's clock, a draft must be for a
	// collection to delete it as the leftover of a backup that will never
	// commit (its chunks are then condemned, and deleted by a later
	// collection). Zero means drafts are never deleted.
	DraftTTL time.Duration
}

// CollectStats says what [Vault.Collect] did.
type CollectStats struct {
	// Chunks counts the chunk locations deleted; Bytes the stored bytes
	// freed (the packs and chunk objects deleted, less the packs written).
	Chunks int
	Bytes  int64
	// Repacked counts the packs rewritten without their collected chunks;
	// Deleted the packs deleted whole; Orphans the packs no index lists
	// that were deleted.
	Repacked, Deleted, Orphans int
	// Condemned counts the chunk locations, and Unlisted the packs no
	// index lists, that this collection condemned, for a later one to
	// delete.
	Condemned, Unlisted int
	// Processed counts the condemned generations whose locations were
	// deleted; Waiting those left for a later collection, because a writer
	// that started before them still runs or they are younger than
	// CollectOptions.MinAge.
	Processed, Waiting int
	// DeadSessions counts the sessions of dead writers deleted; Drafts the
	// drafts older than CollectOptions.DraftTTL deleted.
	DeadSessions, Drafts int
	// Locked counts the packs and format 1 chunks left in an immutable
	// vault because the store still locks them: they stay condemned, or
	// unlisted, and a collection after their lock passes deletes them.
	Locked int
}

// Collect runs one garbage collection: it deletes what an earlier
// collection condemned and no backup needs, then condemns what no
// recovery point or draft needs now, for a later collection to delete
// (see the comment at the top of collect.go). A chunk that a manifest or
// a draft names, or that a writer with an open [Session] may have
// deduplicated against, is never deleted. It may run in several
// processes at once: one runs, the others give way, failing with an
// error matching [ErrCollecting].
//
// A chunk stored alone (format 1) is deleted as an object. A pack whose
// chunks are all deleted is deleted; a pack with some deleted is
// repacked: its other chunks are copied, still sealed, into new packs,
// and it is deleted. The index objects that listed deleted packs are
// replaced by ones without them before any pack is deleted, so that every
// chunk kept stays findable throughout, and a collection cut short leaves
// at worst a chunk stored twice, or a pack no index lists, which a later
// collection removes.
func (v *Vault) Collect(ctx context.Context, opts CollectOptions) (CollectStats, error) {
	// the collection writes packs when it repacks: it is a writer too
	sess, err := v.openSession(ctx, SessionOptions{}, true)
	if err != nil {
		return CollectStats{}, fmt.Errorf("collect: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(sess.Context(), func() { cancel(context.Cause(sess.Context())) })
	defer stop()
	c := &collection{v: v, sess: sess, opts: opts}
	err = c.run(ctx)
	if cerr := sess.Close(context.WithoutCancel(ctx)); err == nil && errors.Is(cerr, ErrSessionExpired) {
		err = cerr
	}
	if err != nil {
		return c.st, fmt.Errorf("collect: %w", err)
	}
	return c.st, nil
}

// collection is one run of Collect.
type collection struct {
	v    *Vault
	sess *Session
	opts CollectOptions
	st   CollectStats
	now  time.Time // by the store's clock

	ready, waiting []*generation
	roots          map[[32]byte]bool // chunks a manifest or draft names
}

func (c *collection) run(ctx context.Context) error {
	v := c.v
	// sessions first, then roots: a writer stores its draft before it
	// deletes its session
	if err := c.sortGenerations(ctx); err != nil {
		return err
	}
	if err := c.readRoots(ctx); err != nil {
		return err
	}
	state, err := v.scan(ctx)
	if err != nil {
		return err
	}
	changed, err := c.process(ctx, state)
	if err != nil {
		return err
	}
	if changed {
		if state, err = v.scan(ctx); err != nil {
			return err
		}
	}
	if err := c.condemn(ctx, state); err != nil {
		return err
	}
	return v.refreshIndex(ctx)
}

// sortGenerations reads the writer sessions, deleting the dead ones, and
// sorts the generations the collection's session knows into those it may
// process and those it may not yet.
func (c *collection) sortGenerations(ctx context.Context) error {
	// the store's clock: the time of our session's object, just stored
	now, live, dead, err := c.v.sessions(ctx, c.sess.id)
	c.now, c.st.DeadSessions = now, dead
	if err != nil {
		return err
	}
	for _, s := range live {
		if s.collector && s.id != c.sess.id {
			return ErrCollecting
		}
	}
	for _, g := range c.v.loadedGenerations(c.sess.known) {
		ok := c.opts.MinAge <= 0 || c.now.Sub(g.modTime) >= c.opts.MinAge
		for _, s := range live {
			if s.id != c.sess.id && !s.known[g.id] {
				ok = false // a writer that may not know of it
				break
			}
		}
		if ok {
			c.ready = append(c.ready, g)
		} else {
			c.waiting = append(c.waiting, g)
		}
	}
	c.st.Waiting = len(c.waiting)
	return nil
}

// readRoots reads the chunks every draft and manifest names, deleting
// the drafts older than DraftTTL. It reads the drafts through before it
// lists the manifests: a commit stores its manifest before it deletes its
// draft, so that a chunk named by either is seen. A root that cannot be
// read fails the collection: its chunks must not be taken for garbage.
func (c *collection) readRoots(ctx context.Context) error {
	v := c.v
	c.roots = map[[32]byte]bool{}
	add := func(m *Manifest) {
		for _, ch := range m.Chunks {
			if sum, ok := decodeID(ch.ID); ok {
				c.roots[sum] = true
			}
		}
	}
	type draft struct {
		id     string
		stored time.Time
	}
	var drafts []draft
	if err := v.ListDrafts(ctx, func(id string, stored time.Time) error {
		drafts = append(drafts, draft{id, stored})
		return nil
	}); err != nil {
		return err
	}
	for _, d := range drafts {
		if c.opts.DraftTTL > 0 && c.now.Sub(d.stored) > c.opts.DraftTTL {
			if err := v.DeleteDraft(ctx, d.id); err != nil {
				return err
			}
			c.st.Drafts++
			continue
		}
		m, err := v.GetDraft(ctx, d.id)
		if errors.Is(err, blob.ErrNotExist) {
			continue // committed or given up since the listing
		}
		if err != nil {
			return err
		}
		add(m)
	}
	var ids []string
	if err := v.ListManifests(ctx, func(id string) error {
		ids = append(ids, id)
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		m, err := v.GetManifest(ctx, id)
		if errors.Is(err, blob.ErrNotExist) {
			continue // deleted since the listing
		}
		if err != nil {
			return err
		}
		add(m)
	}
	return nil
}

// vaultState is the vault as the store holds it, for a collection.
type vaultState struct {
	indexes map[string][]packInfo // index objects, and the packs each lists
	listed  map[string]packInfo   // packs an index lists
	stored  map[string]blob.Info  // packs in the store
	loose   map[[32]byte]int64    // chunks stored alone (format 1), and their sizes
	// chunks locates every chunk in a pack both listed and stored, or
	// stored alone
	chunks *vaultIndex
}

// scan reads the vault's index objects and lists its packs and format 1
// chunks.
func (v *Vault) scan(ctx context.Context) (*vaultState, error) {
	s := &vaultState{indexes: map[string][]packInfo{}, listed: map[string]packInfo{}, loose: map[[32]byte]int64{}, chunks: newVaultIndex()}
	var ids []string
	err := v.store.List(ctx, indexPrefix, func(i blob.Info) error {
		ids = append(ids, strings.TrimPrefix(i.Key, indexPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index: %w", err)
	}
	for _, id := range ids {
		packs, err := v.getIndex(ctx, id)
		if errors.Is(err, blob.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.indexes[id] = packs
		for _, p := range packs {
			s.listed[p.id] = p
		}
	}
	if s.stored, err = v.listPacks(ctx); err != nil {
		return nil, err
	}
	err = v.store.List(ctx, chunksPrefix, func(i blob.Info) error {
		rest := strings.TrimPrefix(i.Key, chunksPrefix)
		dir, id, ok := strings.Cut(rest, "/")
		if ok && validChunkID(id) && dir == id[:2] {
			sum, _ := decodeID(id)
			s.loose[sum] = i.Size
			s.chunks.putLocked(sum, chunkLoc{length: uint32(i.Size)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list format 1 chunks: %w", err)
	}
	for _, id := range slices.Sorted(maps.Keys(s.listed)) {
		if _, ok := s.stored[id]; ok {
			for _, e := range s.listed[id].entries {
				s.chunks.putLocked(e.id, chunkLoc{pack: id, offset: e.offset, length: e.length, size: e.size})
			}
		}
	}
	return s, nil
}

// find returns the location of chunk id in pack ("" for one stored
// alone), if the chunk is still there.
func (s *vaultState) find(id [32]byte, pack string) (chunkLoc, bool) {
	for _, l := range s.chunks.locations(id, 0) {
		if l.pack == pack {
			return l, true
		}
	}
	return chunkLoc{}, false
}

// process deletes what the ready generations condemn and no root needs,
// then the generations. It reports whether it changed anything in the
// store.
func (c *collection) process(ctx context.Context, s *vaultState) (bool, error) {
	// locations some generation condemns, ready or not
	condemned := map[condemnedLoc]bool{}
	for _, g := range append(slices.Clip(c.ready), c.waiting...) {
		for _, l := range g.locs {
			condemned[l] = true
		}
	}
	doomed := map[condemnedLoc]bool{}
	orphans := map[string]bool{}
	for _, g := range c.ready {
		for _, l := range g.locs {
			loc, ok := s.find(l.id, l.pack)
			if !ok || doomed[l] {
				continue // gone already
			}
			if !c.roots[l.id] || c.spare(s, l.id, loc, condemned) {
				doomed[l] = true
			}
		}
		for _, p := range g.unlisted {
			if _, listed := s.listed[p]; !listed {
				if _, stored := s.stored[p]; stored {
					orphans[p] = true
				}
			}
		}
	}
	changed, err := c.remove(ctx, s, doomed, orphans)
	if err != nil {
		return changed, err
	}
	// the generations are done: a location they condemned that a root
	// needs after all is un-condemned
	for _, g := range c.ready {
		if err := c.v.store.Delete(ctx, condemnedPrefix+g.id); err != nil {
			return true, fmt.Errorf("delete condemned generation %s: %w", g.id, err)
		}
		c.st.Processed++
		changed = true
	}
	return changed, nil
}

// spare reports whether chunk id, which a root needs, has a copy besides
// loc that no generation condemns, of loc's stored size: then loc is a
// spare copy, which may be deleted. Only a copy that no generation
// condemns counts, so that two collections running at once never each
// delete the copy the other counted on.
func (c *collection) spare(s *vaultState, id [32]byte, loc chunkLoc, condemned map[condemnedLoc]bool) bool {
	for _, l := range s.chunks.locations(id, 0) {
		if l.pack != loc.pack && l.length == loc.length && !condemned[condemnedLoc{id, l.pack}] {
			return true
		}
	}
	return false
}

// condemn records, in a new generation, the locations of chunks no root
// names, further copies of chunks stored twice, and packs no index lists,
// leaving out what a waiting generation already condemns.
func (c *collection) condemn(ctx context.Context, s *vaultState) error {
	already := map[condemnedLoc]bool{}
	unlisted := map[string]bool{}
	for _, g := range c.waiting {
		for _, l := range g.locs {
			already[l] = true
		}
		for _, p := range g.unlisted {
			unlisted[p] = true
		}
	}
	g := &generation{}
	x := s.chunks
	for id, first := range x.chunks {
		locs := append([]chunkLoc{first}, x.more[id]...)
		if !c.roots[id] {
			for _, l := range locs {
				if cl := (condemnedLoc{id, l.pack}); !already[cl] {
					g.locs = append(g.locs, cl)
				}
			}
			continue
		}
		if len(locs) == 1 {
			continue
		}
		// a chunk stored more than once: one copy of each stored size is
		// kept, the others condemned
		slices.SortFunc(locs, func(a, b chunkLoc) int { return cmp.Compare(a.pack, b.pack) })
		var kept []uint32
		for _, l := range locs {
			cl := condemnedLoc{id, l.pack}
			switch {
			case already[cl]:
			case slices.Contains(kept, l.length):
				g.locs = append(g.locs, cl)
			default:
				kept = append(kept, l.length)
			}
		}
	}
	for id := range s.stored {
		if _, ok := s.listed[id]; !ok && !unlisted[id] {
			g.unlisted = append(g.unlisted, id)
		}
	}
	if len(g.locs) == 0 && len(g.unlisted) == 0 {
		return nil
	}
	if err := c.v.putGeneration(ctx, g); err != nil {
		return err
	}
	c.st.Condemned, c.st.Unlisted = len(g.locs), len(g.unlisted)
	return nil
}

// remove deletes the locations doomed and the unlisted packs orphans, and
// drops the packs listed but no longer stored from the index. It reports
// whether it changed anything in the store.
func (c *collection) remove(ctx context.Context, s *vaultState, doomed map[condemnedLoc]bool, orphans map[string]bool) (bool, error) {
	v, st := c.v, &c.st
	changed := false
	// format 1 chunks
	for l := range doomed {
		if l.pack != "" {
			continue
		}
		err := v.store.Delete(ctx, chunkKey(hexID(l.id)))
		if errors.Is(err, blob.ErrLocked) {
			st.Locked++ // not yet: it stays, and is condemned again
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("delete chunk %s: %w", hexID(l.id), err)
		}
		v.index.remove(l.id, "")
		changed = true
		st.Chunks++
		st.Bytes += s.loose[l.id]
	}

	// packs with doomed chunks: deleted whole, or repacked
	type kept struct {
		id     [32]byte
		length uint32
	}
	drop := map[string]bool{}
	var keep []packEntry // chunks to copy, with the pack they come from
	var from []string
	seen := map[kept]bool{}
	for _, id := range slices.Sorted(maps.Keys(s.listed)) {
		p := s.listed[id]
		if _, ok := s.stored[id]; !ok {
			drop[id] = true // already gone; its index is replaced below
			continue
		}
		dead := 0
		for _, e := range p.entries {
			if doomed[condemnedLoc{e.id, id}] {
				dead++
			}
		}
		if dead == 0 {
			continue
		}
		// a pack the store still locks cannot be deleted: repacking it
		// would only store its live chunks twice; its dead ones stay, and
		// are condemned again until its lock passes
		locked, err := v.lockedPast(ctx, packKey(id), c.now)
		if err != nil {
			return changed, err
		}
		if locked {
			st.Locked++
			continue
		}
		drop[id] = true
		st.Chunks += dead
		if dead == len(p.entries) {
			st.Deleted++
			continue
		}
		st.Repacked++
		for _, e := range p.entries {
			k := kept{e.id, e.length}
			if !doomed[condemnedLoc{e.id, id}] && !seen[k] {
				seen[k] = true
				keep = append(keep, e)
				from = append(from, id)
			}
		}
	}
	if len(keep) > 0 {
		written, err := v.repack(ctx, keep, from)
		if err != nil {
			return true, err
		}
		changed = true
		st.Bytes -= written
	}
	// replace every index that lists a dropped pack; all of them, merged,
	// when there are many
	compact := len(s.indexes) > maxIndexObjects
	var stale []string
	var merged []packInfo
	inMerged := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(s.indexes)) {
		packs := s.indexes[id]
		var rest []packInfo
		for _, p := range packs {
			if !drop[p.id] {
				rest = append(rest, p)
			}
		}
		if !compact && len(rest) == len(packs) {
			continue
		}
		stale = append(stale, id)
		changed = true
		if !compact {
			if len(rest) > 0 {
				if _, err := v.putIndex(ctx, rest); err != nil {
					return true, err
				}
			}
			continue
		}
		for _, p := range rest {
			if !inMerged[p.id] {
				inMerged[p.id] = true
				merged = append(merged, p)
			}
		}
	}
	for len(merged) > 0 {
		n := min(len(merged), packsPerIndex)
		if _, err := v.putIndex(ctx, merged[:n]); err != nil {
			return true, err
		}
		merged = merged[n:]
	}
	for _, id := range stale {
		if err := v.store.Delete(ctx, indexPrefix+id); err != nil {
			return true, fmt.Errorf("delete index %s: %w", id, err)
		}
	}
	for id := range drop {
		if info, ok := s.stored[id]; ok {
			err := v.store.Delete(ctx, packKey(id))
			if errors.Is(err, blob.ErrLocked) {
				// locked since it was looked at: no index lists it now,
				// so it is condemned as unlisted, and deleted once its
				// lock passes; its live chunks are in new packs
				st.Locked++
				continue
			}
			if err != nil {
				return true, fmt.Errorf("delete pack %s: %w", id, err)
			}
			st.Bytes += info.Size
		}
	}
	// packs no index lists: a writer that died, or a collection cut short
	for id := range orphans {
		err := v.store.Delete(ctx, packKey(id))
		if errors.Is(err, blob.ErrLocked) {
			st.Locked++ // still unlisted: condemned again
			continue
		}
		if err != nil {
			return true, fmt.Errorf("delete unlisted pack %s: %w", id, err)
		}
		changed = true
		st.Orphans++
		st.Bytes += s.stored[id].Size
	}
	return changed, nil
}

func hexID(id [32]byte) string { return hex.EncodeToString(id[:]) }

// repack copies the chunks keep (keep[i] in pack from[i]), still sealed,
// into new packs and indexes them, each authenticated on the way. It
// returns the bytes it stored. A pack gone meanwhile is skipped: another
// collection running at once repacked it first.
func (v *Vault) repack(ctx context.Context, keep []packEntry, from []string) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := newPacker(ctx, v, 2, packTarget, cancel)
	var written int64
	buf := make([]byte, 0, maxSealedChunk)
	gone := map[string]bool{}
	for i, e := range keep {
		id := hexID(e.id)
		if gone[from[i]] {
			continue
		}
		rc, err := v.store.GetRange(ctx, packKey(from[i]), int64(e.offset), int64(e.length))
		if errors.Is(err, blob.ErrNotExist) {
			gone[from[i]] = true
			continue
		}
		if err != nil {
			p.flush()
			return written, fmt.Errorf("repack chunk %s of pack %s: %w", id, from[i], err)
		}
		buf, err = readAllInto(rc, buf, maxSealedChunk)
		rc.Close()
		if err == nil && len(buf) != int(e.length) {
			err = fmt.Errorf("read %d bytes of %d", len(buf), e.length)
		}
		if err == nil {
			// authenticate a copy: open decrypts in place
			if _, _, err = v.open(append([]byte(nil), buf...), kindChunk, "chunk/"+id); err != nil {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		}
		if err != nil {
			p.flush()
			return written, &ChunkError{ID: id, Err: fmt.Errorf("repack from pack %s: %w", from[i], err)}
		}
		if err := p.add(e.id, buf, int(e.size)); err != nil {
			p.flush()
			return written, err
		}
		written += int64(len(buf))
	}
	p.flush()
	if err := context.Cause(ctx); err != nil {
		return written, err
	}
	return written, nil
}
