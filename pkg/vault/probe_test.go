package vault

import "testing"

// TestCompressProbe: compression is tried on every chunk until probeRun
// in a row do not shrink, then on one in probeEvery, and on every chunk
// again once one shrinks.
func TestCompressProbe(t *testing.T) {
	var p compressProbe
	tried := func(n int, shrinks bool) int {
		k := 0
		for range n {
			if p.try() {
				k++
				p.result(shrinks)
			}
		}
		return k
	}
	if k := tried(probeRun, false); k != probeRun {
		t.Fatalf("tried %d of the first %d chunks; want all", k, probeRun)
	}
	if k := tried(10*probeEvery, false); k != 10 {
		t.Errorf("incompressible stream: tried %d of %d chunks; want 10", k, 10*probeEvery)
	}
	// a sampled chunk that shrinks brings compression back for every chunk
	for !p.try() {
	}
	p.result(true)
	if k := tried(5, true); k != 5 {
		t.Errorf("after a chunk shrank: tried %d of 5; want all", k)
	}
}
