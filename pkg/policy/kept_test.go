package policy

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestKeptUntil: KeptUntil is exactly when Retain stops keeping each
// point: kept just before, expired from then on; a point a never-expiring
// one depends on is left out, and Retain keeps it.
func TestKeptUntil(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	for round := range 50 {
		points := chainFixture()
		t0 := points[0].Taken
		for k := range points {
			points[k].Expires = t0.Add(time.Duration(rng.IntN(1000)) * time.Hour)
		}
		never := ""
		if round%2 == 1 {
			k := rng.IntN(len(points))
			points[k].Expires, never = time.Time{}, points[k].ID
		}
		kept := KeptUntil(points)
		for _, pt := range points {
			u, ok := kept[pt.ID]
			if !ok {
				if keep, _ := Retain(points, t0.Add(2000*time.Hour)); !slices.Contains(keep, pt.ID) {
					t.Fatalf("round %d: %s left out (never %s) but Retain lets it expire", round, pt.ID, never)
				}
				continue
			}
			if keep, _ := Retain(points, u.Add(-time.Nanosecond)); !slices.Contains(keep, pt.ID) {
				t.Fatalf("round %d: %s kept until %v, but Retain drops it just before", round, pt.ID, u.Sub(t0))
			}
			if keep, _ := Retain(points, u); slices.Contains(keep, pt.ID) {
				t.Fatalf("round %d: %s kept until %v, but Retain still keeps it then", round, pt.ID, u.Sub(t0))
			}
		}
		if never != "" {
			if _, ok := kept[never]; ok {
				t.Fatalf("round %d: %s never expires, yet has a date", round, never)
			}
		}
	}
}
