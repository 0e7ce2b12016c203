package vault

import "github.com/zeebo/blake3"

// Chunk size bounds. Boundaries are content-defined (FastCDC), so the same
// data cuts the same way in every backup and an edit moves only the
// boundaries near it. Changing any of these, or the gear table, changes
// every boundary and so loses deduplication against existing data: they are
// part of the vault format, named in its config (config.go).
//
// maxChunkSize bounds every chunk of every chunking: buffers and readers
// rely on it.
const maxChunkSize = 4 << 20

// chunkParams are one chunking's bounds. Normalized chunking: before
// normal a cut needs more zero hash bits (maskSmall) than after it
// (maskLarge), which pulls sizes toward the middle.
type chunkParams struct {
	min, normal, max     int
	maskSmall, maskLarge uint64
}

const (
	chunking1M   = "fastcdc-1m"
	chunking512K = "fastcdc-512k"
	chunking256K = "fastcdc-256k"
)

// chunkings are the chunkings a vault's config may name.
var chunkings = map[string]chunkParams{
	// format 1's, kept by vaults upgraded from it: on random data the mean
	// chunk is about 1.05 MiB and one in 200,000 hits the maximum
	chunking1M: {min: 256 << 10, normal: 1 << 20, max: 4 << 20,
		maskSmall: (1<<21 - 1) << (64 - 21), maskLarge: (1<<18 - 1) << (64 - 18)},
	// the first format 2 vaults': chunks no longer cost an object each
	// (packs), so a smaller chunk deduplicates SQL Server's 8 KiB page
	// changes better; about 530 KiB on random data
	chunking512K: {min: 128 << 10, normal: 512 << 10, max: 2 << 20,
		maskSmall: (1<<20 - 1) << (64 - 20), maskLarge: (1<<17 - 1) << (64 - 17)},
	// new vaults': on the streamer's benchmark (a second full of a 1 GiB
	// database after 0.1% of its pages changed) it adds 10.4 MB where
	// fastcdc-512k adds 17.5 (restic: 12.7); about 265 KiB on random data
	chunking256K: {min: 64 << 10, normal: 256 << 10, max: 1 << 20,
		maskSmall: (1<<19 - 1) << (64 - 19), maskLarge: (1<<16 - 1) << (64 - 16)},
}

// gearTable is FastCDC's table of one random 64-bit value per byte value.
type gearTable [256]uint64

// newGearTable derives a vault's gear table from its chunk-id key. A table
// secret to the vault keeps chunk boundaries, which an observer of the store
// sees as object sizes, from fingerprinting known content.
func newGearTable(key []byte) *gearTable {
	var raw [256 * 8]byte
	blake3.DeriveKey("coffer vault 2026 chunker gear table v1", key, raw[:])
	var g gearTable
	for i := range g {
		for j := range 8 {
			g[i] |= uint64(raw[i*8+j]) << (8 * j)
		}
	}
	return &g
}

// chunker finds FastCDC chunk boundaries in a stream fed to it in pieces of
// any size; the boundaries depend only on the bytes, never on how they were
// split between calls to next.
type chunker struct {
	gear *gearTable
	p    chunkParams
	pos  int    // bytes of the current chunk seen so far
	fp   uint64 // gear hash of the current chunk since p.min
}

// next consumes a prefix of p as the continuation of the current chunk. It
// returns how many bytes it consumed and whether the current chunk ends
// after them; the next chunk then starts with p[n:]. With cut false, n is
// len(p).
func (c *chunker) next(p []byte) (n int, cut bool) {
	i := 0
	cp := &c.p
	if c.pos < cp.min {
		skip := min(cp.min-c.pos, len(p))
		c.pos += skip
		i = skip
		if c.pos < cp.min {
			return i, false
		}
	}
	fp := c.fp
	g := c.gear
	if c.pos < cp.normal {
		end := min(len(p), i+cp.normal-c.pos)
		start := i
		maskSmall := cp.maskSmall
		for ; i < end; i++ {
			fp = fp<<1 + g[p[i]]
			if fp&maskSmall == 0 {
				c.pos, c.fp = 0, 0
				return i + 1, true
			}
		}
		c.pos += end - start
	}
	if c.pos >= cp.normal {
		end := min(len(p), i+cp.max-c.pos)
		start := i
		maskLarge := cp.maskLarge
		for ; i < end; i++ {
			fp = fp<<1 + g[p[i]]
			if fp&maskLarge == 0 {
				c.pos, c.fp = 0, 0
				return i + 1, true
			}
		}
		c.pos += end - start
		if c.pos == cp.max {
			c.pos, c.fp = 0, 0
			return i, true
		}
	}
	c.fp = fp
	return i, false
}
