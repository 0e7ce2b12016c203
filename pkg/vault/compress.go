package vault

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Compression is how a [Writer] compresses chunks before sealing them.
// Whichever it is, a chunk that does not shrink is stored as it is, and a
// stream whose chunks stop shrinking is only sampled (see compressProbe).
// Readers need no setting: each sealed chunk says how it was compressed.
type Compression string

const (
	// Zstd compresses with zstd at its fastest level: the better ratio,
	// and the zero value of WriterOptions.Compression.
	Zstd Compression = "zstd"
	// S2 compresses with S2, a faster relative of Snappy: a lower ratio
	// than zstd, for a fraction of the CPU time, writing and reading. A
	// vault holding S2 chunks needs a coffer that knows S2 to read them.
	S2 Compression = "s2"
	// Uncompressed stores chunks as they are, for data known not to
	// compress.
	Uncompressed Compression = "none"
)

// ParseCompression returns the Compression named s: "zstd", "s2" or
// "none"; the empty string means Zstd.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case "":
		return Zstd, nil
	case Zstd, S2, Uncompressed:
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q: want zstd, s2 or none", s)
}

// compress compresses a chunk's plaintext data with c into dst's memory
// and returns the compressed form and the sealed header's flag that says
// how. c must not be Uncompressed.
func (v *Vault) compress(c Compression, dst, data []byte) ([]byte, byte) {
	if c == S2 {
		// the block format: GCM and the chunk id already check, so the
		// stream format's CRCs would only cost time
		return s2.Encode(dst[:0], data), flagS2
	}
	return v.enc.EncodeAll(data, dst[:0]), flagZstd
}

// zstdSlack is the room zstd's decoder wants past a frame's content to
// decode its last block with its fast copies (16 bytes in klauspost's
// decoder): without it the block takes the exact, slower copies.
const zstdSlack = 64

// decompress returns the plaintext of a chunk's payload compressed as
// flags say, into plain's memory (grown as needed). wantSize, if not
// negative, is the plaintext size the caller expects. Errors are plain
// descriptions; the caller attaches ErrCorrupt and the chunk's id.
func (v *Vault) decompress(flags byte, payload, plain []byte, wantSize int64) ([]byte, error) {
	switch flags {
	case flagZstd:
		if wantSize+zstdSlack > int64(cap(plain)) {
			plain = make([]byte, 0, wantSize+zstdSlack)
		}
		out, err := v.dec.DecodeAll(payload, plain[:0])
		if err != nil {
			return nil, fmt.Errorf("decompress zstd: %v", err)
		}
		return out, nil
	case flagS2:
		// s2 allocates what the block's header claims: check it first
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, fmt.Errorf("decompress s2: %v", err)
		}
		if n > maxChunkSize {
			return nil, fmt.Errorf("decompresses to %d bytes, more than any chunk", n)
		}
		if wantSize >= 0 && int64(n) != wantSize {
			return nil, fmt.Errorf("holds %d bytes; the stream expects %d", n, wantSize)
		}
		out, err := s2.Decode(plain[:cap(plain)], payload)
		if err != nil {
			return nil, fmt.Errorf("decompress s2: %v", err)
		}
		return out, nil
	}
	return payload, nil
}

// compressProbe spares a stream that does not compress (a database with
// Transparent Data Encryption, a backup SQL Server compressed) the cost
// of compressing every chunk only to store it as it is: after probeRun
// chunks in a row that did not shrink, it tries one chunk in probeEvery,
// until one shrinks again. It works the same whichever the Compression.
type compressProbe struct {
	mu      sync.Mutex
	misses  int // chunks in a row that did not shrink
	skipped int // chunks not tried since the last one tried
}

const (
	probeRun   = 8
	probeEvery = 16
)

// try reports whether to try compressing the next chunk.
func (p *compressProbe) try() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.misses < probeRun {
		return true
	}
	if p.skipped++; p.skipped >= probeEvery {
		p.skipped = 0
		return true
	}
	return false
}

// result records whether a chunk tried shrank.
func (p *compressProbe) result(shrank bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if shrank {
		p.misses, p.skipped = 0, 0
	} else {
		p.misses++
	}
}
