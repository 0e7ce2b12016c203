package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// CollectStats says what [Vault.Collect] did.
type CollectStats struct {
	// Chunks counts the chunks removed; Bytes the stored bytes freed (the
	// packs and chunk objects deleted, less the packs written).
	Chunks int
	Bytes  int64
	// Repacked counts the packs rewritten without their collected chunks;
	// Deleted the packs deleted whole; Orphans the packs no index lists
	// that were deleted.
	Repacked, Deleted, Orphans int
}

// Collect removes the chunks doomed names from the vault. A format 1
// chunk's object is deleted. A pack whose chunks are all doomed is
// deleted; a pack with some chunks doomed is repacked: its other chunks
// are copied, still sealed, into new packs, and it is deleted. The index
// objects that listed deleted packs are replaced by ones without them
// before any pack is deleted, so that every chunk kept stays findable
// throughout, and a collection cut short leaves at worst a chunk stored
// twice, or a pack no index lists. Packs no index lists are deleted when
// older than orphansBefore: a writer stores its packs before their index,
// so those of a backup being written are unlisted for a while.
//
// The caller must make sure that no manifest refers to a doomed chunk and
// that no backup still being written may (writers deduplicate against
// the chunks the vault has): a backup that does fails its commit, since
// PutManifest checks every chunk.
func (v *Vault) Collect(ctx context.Context, doomed map[string]bool, orphansBefore time.Time) (CollectStats, error) {
	var st CollectStats
	if err := v.refreshIndex(ctx); err != nil {
		return st, fmt.Errorf("collect: %w", err)
	}
	// the index objects, and the packs each lists
	var indexIDs []string
	err := v.store.List(ctx, indexPrefix, func(i blob.Info) error {
		indexIDs = append(indexIDs, strings.TrimPrefix(i.Key, indexPrefix))
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("collect: list index: %w", err)
	}
	indexes := make(map[string][]packInfo, len(indexIDs))
	listed := map[string]packInfo{} // pack id -> its entries
	for _, id := range indexIDs {
		packs, err := v.getIndex(ctx, id)
		if errors.Is(err, blob.ErrNotExist) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("collect: %w", err)
		}
		indexes[id] = packs
		for _, p := range packs {
			listed[p.id] = p
		}
	}
	stored, err := v.listPacks(ctx)
	if err != nil {
		return st, fmt.Errorf("collect: %w", err)
	}

	// format 1 chunks
	for id := range doomed {
		var sum [32]byte
		if !validChunkID(id) {
			continue
		}
		hex.Decode(sum[:], []byte(id))
		if loc, ok := v.index.lookup(sum); ok && loc.pack == "" {
			if err := v.DeleteChunk(ctx, id); err != nil && !errors.Is(err, blob.ErrNotExist) {
				return st, fmt.Errorf("collect: %w", err)
			}
			st.Chunks++
			st.Bytes += int64(loc.length)
		}
	}

	// packs with doomed chunks: deleted whole, or repacked
	drop := map[string]bool{}
	var keep []packEntry // chunks to copy, with the pack they come from
	var from []string
	seen := map[[32]byte]bool{}
	for id, p := range listed {
		if _, ok := stored[id]; !ok {
			continue // already gone; its index is replaced below
		}
		dead := 0
		for _, e := range p.entries {
			if doomed[hex.EncodeToString(e.id[:])] {
				dead++
			}
		}
		if dead == 0 {
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
			if !doomed[hex.EncodeToString(e.id[:])] && !seen[e.id] {
				seen[e.id] = true
				keep = append(keep, e)
				from = append(from, id)
			}
		}
	}
	for id := range listed {
		if _, ok := stored[id]; !ok {
			drop[id] = true
		}
	}
	if len(keep) > 0 {
		written, err := v.repack(ctx, keep, from)
		if err != nil {
			return st, fmt.Errorf("collect: %w", err)
		}
		st.Bytes -= written
	}
	// replace every index that lists a dropped pack
	var stale []string
	for id, packs := range indexes {
		var rest []packInfo
		changed := false
		for _, p := range packs {
			if drop[p.id] {
				changed = true
				continue
			}
			rest = append(rest, p)
		}
		if !changed {
			continue
		}
		if len(rest) > 0 {
			if _, err := v.putIndex(ctx, rest); err != nil {
				return st, fmt.Errorf("collect: %w", err)
			}
		}
		stale = append(stale, id)
	}
	for _, id := range stale {
		if err := v.store.Delete(ctx, indexPrefix+id); err != nil {
			return st, fmt.Errorf("collect: delete index %s: %w", id, err)
		}
	}
	for id := range drop {
		if info, ok := stored[id]; ok {
			if err := v.store.Delete(ctx, packKey(id)); err != nil {
				return st, fmt.Errorf("collect: delete pack %s: %w", id, err)
			}
			st.Bytes += info.Size
		}
	}
	// packs no index lists: a writer that died, or a collection cut short
	for id, info := range stored {
		if _, ok := listed[id]; !ok && info.ModTime.Before(orphansBefore) {
			if err := v.store.Delete(ctx, packKey(id)); err != nil {
				return st, fmt.Errorf("collect: delete unlisted pack %s: %w", id, err)
			}
			st.Orphans++
			st.Bytes += info.Size
		}
	}
	if err := v.refreshIndex(ctx); err != nil {
		return st, fmt.Errorf("collect: %w", err)
	}
	return st, nil
}

// repack copies the chunks keep (keep[i] in pack from[i]), still sealed,
// into new packs and indexes them, each authenticated on the way. It
// returns the bytes it stored.
func (v *Vault) repack(ctx context.Context, keep []packEntry, from []string) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := newPacker(ctx, v, 2, packTarget, cancel)
	var written int64
	buf := make([]byte, 0, maxSealedChunk)
	for i, e := range keep {
		id := hex.EncodeToString(e.id[:])
		rc, err := v.store.GetRange(ctx, packKey(from[i]), int64(e.offset), int64(e.length))
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
