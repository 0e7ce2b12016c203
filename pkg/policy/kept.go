package policy

import "time"

// KeptUntil returns, by point id, how long [Retain] keeps each point if
// nothing new comes to depend on it: the latest Expires among the point
// and every point that depends on it, transitively (a full until the last
// log or differential that needs it expires). A point that never expires
// (zero Expires), or that one that never expires depends on, is left out:
// it is kept for ever.
func KeptUntil(points []Point) map[string]time.Time {
	g := newChainGraph(points)
	until := make([]time.Time, len(g.pts))
	never := make([]bool, len(g.pts))
	order := g.order()
	// dependents before what they depend on
	for k := len(order) - 1; k >= 0; k-- {
		i := order[k]
		if e := g.pts[i].Expires; e.IsZero() {
			never[i] = true
		} else if e.After(until[i]) {
			until[i] = e
		}
		if d := g.dep[i]; d >= 0 {
			never[d] = never[d] || never[i]
			if until[i].After(until[d]) {
				until[d] = until[i]
			}
		}
	}
	out := make(map[string]time.Time, len(g.pts))
	for i, pt := range g.pts {
		if !never[i] {
			out[pt.ID] = until[i]
		}
	}
	return out
}
