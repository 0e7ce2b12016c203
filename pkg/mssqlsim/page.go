package mssqlsim

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
)

// PageSize is SQL Server's page size.
const PageSize = 8192

// pagesPerExtent is SQL Server's extent size, the unit a differential backup
// copies.
const pagesPerExtent = 8

const (
	pageHeaderSize = 96
	pageMagic      = 0x50474553 // "SEGP"
	offMagic       = 0
	offID          = 4
	offVersion     = 8
	offSeed        = 12
	offSlots       = 20
	offChecksum    = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// words fill the character columns of generated rows, so pages compress the
// way row data does: repeated vocabulary, small integers, free space.
var words = [...]string{
	"Alvarez", "Brennan", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
	"Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov",
	"Quinn", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Xu",
	"Yamamoto", "Zhang", "invoice", "shipped", "pending", "returned", "Berlin", "Lisbon",
	"Osaka", "Toronto", "Nairobi", "Lima", "Oslo", "Perth", "express", "standard",
}

// wordRecord is a word as a row holds it (a length byte, then the
// letters), zero-padded to 16 bytes and read as two words.
type wordRecord struct {
	lo, hi uint64
	len    uint8 // bytes of the record
}

var wordRecords = func() (out [len(words)]wordRecord) {
	for i, w := range words {
		if len(w) > 15 {
			panic("mssqlsim: word " + w + " is longer than a record holds")
		}
		var b [16]byte
		b[0] = byte(len(w))
		copy(b[1:], w)
		out[i] = wordRecord{lo: binary.LittleEndian.Uint64(b[:8]), hi: binary.LittleEndian.Uint64(b[8:]), len: uint8(1 + len(w))}
	}
	return out
}()

// rng is wyrand: fast, and good enough to make page contents look random.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(uint64(*r), uint64(*r)^0xe7037ed1a0b428db)
	return hi ^ lo
}

// fillPage writes the bytes of page id at version v of a database with the
// given seed into p, which must be PageSize long. The content is a pure
// function of (seed, id, v).
func fillPage(p []byte, seed uint64, id, v uint32) {
	fillPageContent(p, seed, id, v)
	binary.LittleEndian.PutUint32(p[offChecksum:], crc32.Checksum(p[pageHeaderSize:], castagnoli))
}

// fillPageContent is fillPage without the checksum: its 4 bytes are
// left zero.
func fillPageContent(p []byte, seed uint64, id, v uint32) {
	clear(p)
	r := rng(seed ^ uint64(id)*0x9e3779b97f4a7c15 ^ uint64(v)*0xc2b2ae3d27d4eb4f)
	binary.LittleEndian.PutUint32(p[offMagic:], pageMagic)
	binary.LittleEndian.PutUint32(p[offID:], id)
	binary.LittleEndian.PutUint32(p[offVersion:], v)
	binary.LittleEndian.PutUint64(p[offSeed:], seed)
	if v == 0 {
		// A page never written since the database was created is
		// allocated and empty.
		return
	}
	// Pages fill to between 55% and 90%, like a table with some free space.
	limit := PageSize/2 + 600 + int(r.next()%uint64(PageSize*35/100))
	off := pageHeaderSize
	slots := 0
	base := uint32(id) * 64
	for off+64 < limit {
		x := r.next()
		row := p[off:]
		row[0] = 0x30 // status bits of a fixed-length row
		row[1] = 0x00
		binary.LittleEndian.PutUint32(row[4:], base+uint32(slots))     // key
		binary.LittleEndian.PutUint32(row[8:], uint32(x%100000))       // quantity
		binary.LittleEndian.PutUint64(row[12:], 738000+(x>>20)%4000)   // date
		binary.LittleEndian.PutUint32(row[20:], uint32(x>>40)%5000*25) // amount in cents
		n := 24
		for k := 0; k < 2; k++ {
			// the word's length and letters, as two stores (the page
			// past them is still zero, and rows end well before the
			// slot array)
			w := &wordRecords[(x>>(8*k+3))%uint64(len(words))]
			binary.LittleEndian.PutUint64(row[n:], w.lo)
			binary.LittleEndian.PutUint64(row[n+8:], w.hi)
			n += int(w.len)
		}
		binary.LittleEndian.PutUint16(row[2:], uint16(n))
		// slot array grows from the end of the page
		binary.LittleEndian.PutUint16(p[PageSize-2*(slots+1):], uint16(off))
		off += n
		slots++
	}
	binary.LittleEndian.PutUint16(p[offSlots:], uint16(slots))
}

// pageHeader is what a page says about itself.
type pageHeader struct {
	id, version uint32
	seed        uint64
	checksum    uint32
}

func readPageHeader(p []byte) (pageHeader, bool) {
	if binary.LittleEndian.Uint32(p[offMagic:]) != pageMagic {
		return pageHeader{}, false
	}
	return pageHeader{
		id:       binary.LittleEndian.Uint32(p[offID:]),
		version:  binary.LittleEndian.Uint32(p[offVersion:]),
		seed:     binary.LittleEndian.Uint64(p[offSeed:]),
		checksum: binary.LittleEndian.Uint32(p[offChecksum:]),
	}, true
}

// pageChecksumOK reports whether the page's stored checksum matches its body,
// as PAGE_VERIFY CHECKSUM would.
func pageChecksumOK(p []byte) bool {
	return binary.LittleEndian.Uint32(p[offChecksum:]) == crc32.Checksum(p[pageHeaderSize:], castagnoli)
}
