package mssqlsim

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestFillPageStable checks that a page's bytes are the function of
// (seed, id, version) they always were: a vault written by an earlier
// coffer holds pages the simulator made then, and restoring one must find
// each page as the simulator would make it now, or it records the page as
// damaged. The digest is of pages made before fillPage wrote its words as
// two stores.
func TestFillPageStable(t *testing.T) {
	h := sha256.New()
	p := make([]byte, PageSize)
	for _, seed := range []uint64{0, 1, 0x9e3779b97f4a7c15} {
		for id := uint32(0); id < 1000; id++ {
			for v := uint32(0); v < 3; v++ {
				fillPage(p, seed, id, v)
				if !pageChecksumOK(p) {
					t.Fatalf("page %d version %d of seed %#x: checksum does not match", id, v, seed)
				}
				h.Write(p)
			}
		}
	}
	const want = "b8ecade3ea3900dfe148d6538a1905086a121576f232f76c87fb3e08a2b9d473"
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != want {
		t.Fatalf("pages digest to %s; want %s", got, want)
	}
}
