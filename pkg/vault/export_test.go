package vault

import "context"

// SetSmallChunks makes v cut streams into small chunks, 2 to 32 KiB and
// about 8 KiB, so that a test gets many chunks out of little data. Every
// vault of a test that deduplicates one stream against another must use
// the same chunking.
func SetSmallChunks(v *Vault) {
	v.chunking = chunkParams{min: 2 << 10, normal: 8 << 10, max: 32 << 10,
		maskSmall: (1<<14 - 1) << (64 - 14), maskLarge: (1<<11 - 1) << (64 - 11)}
}

// IgnoreCondemned makes v's writers deduplicate against the chunk
// locations garbage collection condemned, as if there were no
// condemnation: for showing that TestCollectRace then fails.
func IgnoreCondemned(v *Vault) { v.ignoreCondemned = true }

// IndexReused counts the writer sessions of v that kept the index it
// held without reading it again.
func IndexReused(v *Vault) int64 { return v.condemned.reused.Load() }

// RefreshIndex reads the index objects other processes stored, as a
// writer session's opening does.
func RefreshIndex(v *Vault) error { return v.refreshIndex(context.Background()) }

// KnowsChunk reports whether v's index holds a location of chunk id.
func KnowsChunk(v *Vault, id string) bool {
	_, ok := v.index.lookupID(id)
	return ok
}
