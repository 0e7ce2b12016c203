package policy

import (
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Live returns the records of rps that are not soft-deleted (a person
// deleted them: RecoveryPoint.deleted_at), in their order: the points a
// restore, a verification or a listing offers.
func Live(rps []*cofferv1.RecoveryPoint) []*cofferv1.RecoveryPoint {
	out := make([]*cofferv1.RecoveryPoint, 0, len(rps))
	for _, rp := range rps {
		if rp.GetDeletedAt() == nil {
			out = append(out, rp)
		}
	}
	return out
}

// Orphans returns the points, not among gone, that can be restored from
// points but could not be once the points gone names are removed: what
// deleting gone would take with it, in the order they were taken. A full
// whose later logs still reach back to an earlier full through an
// unbroken log chain orphans none of them.
func Orphans(points []Point, gone []string) []string {
	drop := make(map[string]bool, len(gone))
	for _, id := range gone {
		drop[id] = true
	}
	var kept []Point
	for _, pt := range points {
		if !drop[pt.ID] {
			kept = append(kept, pt)
		}
	}
	before, after := restorableSet(points), restorableSet(kept)
	g := newChainGraph(kept) // ordered by Taken
	var out []string
	for _, pt := range g.pts {
		if before[pt.ID] && !after[pt.ID] {
			out = append(out, pt.ID)
		}
	}
	return out
}

// restorableSet returns the IDs of the points whose chain reaches a full.
func restorableSet(points []Point) map[string]bool {
	g := newChainGraph(points)
	known := make([]int8, len(g.pts)) // 0 not yet, 1 restorable, -1 not
	// walk follows i's dependencies up to a point already known or the
	// root, and records the answer for the whole path
	walk := func(i int) int8 {
		var path []int
		j := i
		for ; j >= 0 && known[j] == 0 && len(path) <= len(g.pts); j = g.dep[j] {
			path = append(path, j)
		}
		var v int8 = -1
		switch {
		case j >= 0 && known[j] != 0:
			v = known[j]
		case j < 0 && len(path) > 0:
			if k := g.pts[path[len(path)-1]].Kind; k == Full || k == CopyOnlyFull {
				v = 1
			}
		}
		for _, p := range path {
			known[p] = v
		}
		return v
	}
	out := make(map[string]bool, len(g.pts))
	for i, pt := range g.pts {
		if walk(i) == 1 {
			out[pt.ID] = true
		}
	}
	return out
}

// DeletedNote says when a soft-deleted recovery point was deleted, by
// whom, and until when it can be brought back.
func DeletedNote(rp *cofferv1.RecoveryPoint) string {
	note := "deleted " + rp.GetDeletedAt().AsTime().UTC().Format(time.RFC3339)
	if by := rp.GetDeletedBy(); by != "" {
		note += " by " + by
	}
	if end := rp.GetPurgeAfter(); end != nil {
		note += ", restorable until " + end.AsTime().UTC().Format(time.RFC3339)
	}
	return note
}
