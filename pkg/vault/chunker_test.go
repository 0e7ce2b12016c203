package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

func testGear(seed byte) *gearTable { return newGearTable(bytes.Repeat([]byte{seed}, 32)) }

func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// cuts returns the chunk lengths of data fed to a format 1 chunker in
// pieces of the given sizes, cycled.
func cuts(g *gearTable, data []byte, pieces ...int) []int {
	return cutsWith(g, chunkings[chunking1M], data, pieces...)
}

// cutsWith is cuts with the chunking p.
func cutsWith(g *gearTable, p chunkParams, data []byte, pieces ...int) []int {
	if len(pieces) == 0 {
		pieces = []int{len(data) + 1}
	}
	c := chunker{gear: g, p: p}
	var out []int
	cur := 0
	for i, off := 0, 0; off < len(data); i++ {
		p := data[off:min(len(data), off+pieces[i%len(pieces)])]
		for len(p) > 0 {
			n, cut := c.next(p)
			cur += n
			p = p[n:]
			off += n
			if cut {
				out = append(out, cur)
				cur = 0
			}
		}
	}
	if cur > 0 {
		out = append(out, cur)
	}
	return out
}

func TestChunkerBounds(t *testing.T) {
	g := testGear(1)
	tests := []struct {
		name string
		data []byte
	}{
		{"random", randData(1, 48<<20)},
		{"zeros", make([]byte, 20<<20)},
		{"repeating", bytes.Repeat([]byte("SELECT * FROM t; "), 1<<20)},
	}
	for name, p := range chunkings {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				sizes := cutsWith(g, p, tt.data)
				total := 0
				for i, s := range sizes {
					total += s
					last := i == len(sizes)-1
					if s > p.max || s > maxChunkSize || (!last && s < p.min) {
						t.Errorf("chunk %d is %d bytes; want %d to %d", i, s, p.min, p.max)
					}
				}
				if total != len(tt.data) {
					t.Errorf("chunks add up to %d bytes; want %d", total, len(tt.data))
				}
				t.Logf("%d chunks, mean %.2f MiB", len(sizes), float64(total)/float64(len(sizes))/(1<<20))
			})
		}
	}
}

func TestChunkerMeanSize(t *testing.T) {
	data := randData(2, 96<<20)
	for name, want := range map[string]float64{chunking1M: 1.05, chunking512K: 0.52, chunking256K: 0.26} {
		sizes := cutsWith(testGear(2), chunkings[name], data)
		mean := float64(len(data)) / float64(len(sizes)) / (1 << 20)
		if mean < want*0.8 || mean > want*1.2 {
			t.Errorf("%s: mean chunk size on random data = %.3f MiB; want about %.2f", name, mean, want)
		}
	}
}

// TestChunkerStreaming checks that boundaries do not depend on how the
// stream is split into writes.
func TestChunkerStreaming(t *testing.T) {
	g := testGear(3)
	data := randData(3, 24<<20)
	want := cuts(g, data)
	for _, pieces := range [][]int{{1 << 20}, {1}, {7, 65536, 3}, {256 << 10}, {1<<20 - 1, 2}, {maxChunkSize + 5}} {
		if len(pieces) == 1 && pieces[0] == 1 {
			// Byte by byte over a shorter prefix: a cut decision is local.
			short := data[:6<<20]
			if got, want := cuts(g, short, 1), cuts(g, short); !slices.Equal(got, want) {
				t.Errorf("fed 1 byte at a time: cuts %v; want %v", got, want)
			}
			continue
		}
		if got := cuts(g, data, pieces...); !slices.Equal(got, want) {
			t.Errorf("fed in pieces of %v: cuts %v; want %v", pieces, got, want)
		}
	}
}

// chunkSums returns the SHA-256 of each chunk of data.
func chunkSums(g *gearTable, data []byte) [][32]byte {
	var out [][32]byte
	off := 0
	for _, n := range cuts(g, data) {
		out = append(out, sha256.Sum256(data[off:off+n]))
		off += n
	}
	return out
}

// TestChunkerLocality checks that an edit changes only the chunks near it.
func TestChunkerLocality(t *testing.T) {
	g := testGear(4)
	data := randData(4, 40<<20)
	orig := chunkSums(g, data)
	insert := randData(5, 100)
	tests := []struct {
		name    string
		edit    func() []byte
		maxDiff int // chunks of the edited stream not found in the original
	}{
		{"insert near start", func() []byte { return slices.Concat(data[:1000], insert, data[1000:]) }, 1},
		{"insert at start", func() []byte { return slices.Concat(insert, data) }, 1},
		{"delete near start", func() []byte { return slices.Concat(data[:5000], data[5100:]) }, 1},
		{"overwrite in middle", func() []byte {
			d := slices.Clone(data)
			copy(d[20<<20:], insert)
			return d
		}, 2},
		{"insert 1 MiB in middle", func() []byte { return slices.Concat(data[:17<<20], randData(6, 1<<20), data[17<<20:]) }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			known := make(map[[32]byte]bool)
			for _, s := range orig {
				known[s] = true
			}
			edited := chunkSums(g, tt.edit())
			changed := 0
			for _, s := range edited {
				if !known[s] {
					changed++
				}
			}
			if changed > tt.maxDiff {
				t.Errorf("%d of %d chunks changed; want at most %d", changed, len(edited), tt.maxDiff)
			}
		})
	}
}

// TestChunkerKeyed checks that vaults with different keys cut differently,
// and that one key always cuts the same way.
func TestChunkerKeyed(t *testing.T) {
	data := randData(7, 16<<20)
	a1, a2, b := cuts(testGear(8), data), cuts(newGearTable(bytes.Repeat([]byte{8}, 32)), data), cuts(testGear(9), data)
	if !slices.Equal(a1, a2) {
		t.Errorf("same key, different cuts: %v, %v", a1, a2)
	}
	if slices.Equal(a1, b) {
		t.Errorf("different keys, same cuts: %v", a1)
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randData(10, 64<<20)
	g := testGear(10)
	for _, name := range []string{chunking256K, chunking1M} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				c := chunker{gear: g, p: chunkings[name]}
				for p := data; len(p) > 0; {
					n, _ := c.next(p)
					p = p[n:]
				}
			}
		})
	}
}
