package vault_test

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
)

// pageSize is SQL Server's page size.
const pageSize = 8192

var (
	firstNames = []string{"Anna", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena", "Mateo", "Nora", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tara"}
	lastNames  = []string{"Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Olsen", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber"}
	cities     = []string{"Amsterdam", "Berlin", "Copenhagen", "Dublin", "Edinburgh", "Frankfurt", "Geneva", "Helsinki", "Istanbul", "Jakarta", "Krakow", "Lisbon", "Madrid", "Nairobi", "Oslo", "Prague", "Quebec", "Rome", "Stockholm", "Toronto", "Utrecht", "Vienna", "Warsaw", "Zurich"}
	statuses   = []byte("NSDRC")
)

// sqlPages returns n pages of a pretend SQL Server data file: a page header,
// rows of an orders table with sequential keys, skewed customer ids, nearby
// dates, money amounts and names and cities from small vocabularies, free
// space, and a slot array. Like real pages they compress by about half, and
// every page differs (its page id and LSN). The pages depend only on seed
// and on first, the number of the first page.
//
// The result is shared between calls with the same arguments, which makes
// the tests for the second backend cheaper: callers must not modify it.
func sqlPages(seed uint64, first, n int) []byte {
	k := pagesKey{seed, first, n}
	pagesCache.Lock()
	defer pagesCache.Unlock()
	if b, ok := pagesCache.m[k]; ok {
		return b
	}
	b := makePages(seed, first, n)
	pagesCache.m[k] = b
	return b
}

type pagesKey struct {
	seed     uint64
	first, n int
}

var pagesCache = struct {
	sync.Mutex
	m map[pagesKey][]byte
}{m: make(map[pagesKey][]byte)}

func makePages(seed uint64, first, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(first)))
	out := make([]byte, n*pageSize)
	for i := range n {
		fillPage(r, out[i*pageSize:(i+1)*pageSize], first+i, seed)
	}
	return out
}

func fillPage(r *rand.Rand, p []byte, pageID int, seed uint64) {
	le := binary.LittleEndian
	// Header, 96 bytes.
	p[0], p[1] = 1, 4 // type: data page; header version
	le.PutUint16(p[2:], 0x8200)
	le.PutUint32(p[4:], uint32(pageID-1))
	le.PutUint32(p[8:], uint32(pageID+1))
	le.PutUint32(p[24:], 245575913) // object id
	le.PutUint32(p[32:], uint32(pageID))
	le.PutUint64(p[40:], seed<<40|uint64(pageID)*50+uint64(r.IntN(40))) // LSN
	// Pages fill to between 55% and 90%, like a table with some free
	// space; the rest is zeros.
	limit := pageSize/2 + 600 + r.IntN(pageSize*35/100)
	off := 96
	var slots []uint16
	rowID := pageID * 64
	day := 45000 + pageID/20
	for off+80 < limit {
		slots = append(slots, uint16(off))
		row := p[off:]
		row[0], row[1] = 0x30, 0x00 // status bits
		le.PutUint16(row[2:], 36)   // fixed-length end
		le.PutUint32(row[4:], uint32(rowID))
		le.PutUint32(row[8:], uint32(1000+r.IntN(500)*r.IntN(50))) // customer
		le.PutUint32(row[12:], uint32(day+r.IntN(3)))              // date
		le.PutUint32(row[16:], uint32(r.IntN(86400*300)))          // time ticks
		le.PutUint64(row[20:], uint64(r.IntN(200000))*100)         // money
		le.PutUint32(row[28:], uint32(r.IntN(100)))                // quantity
		row[32] = statuses[r.IntN(len(statuses))]                  // status char(1)
		le.PutUint16(row[36:], 9)                                  // column count
		row[38] = 0                                                // null bitmap
		le.PutUint16(row[39:], 2)                                  // variable columns
		name := firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))]
		city := cities[r.IntN(len(cities))]
		v := 45
		le.PutUint16(row[41:], uint16(v+len(name)))
		le.PutUint16(row[43:], uint16(v+len(name)+len(city)))
		v += copy(row[v:], name)
		v += copy(row[v:], city)
		off += v
		rowID++
	}
	// Slot array, growing backwards from the end of the page.
	le.PutUint16(p[22:], uint16(len(slots)))
	le.PutUint16(p[28:], uint16(off))
	for i, s := range slots {
		le.PutUint16(p[pageSize-2*(i+1):], s)
	}
}
