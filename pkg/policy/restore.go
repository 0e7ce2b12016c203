package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Range is a continuous stretch of time to any moment of which a database
// can be restored: a full or differential, then unbroken logs.
type Range struct {
	// From and To are the first and last moments: a full's or
	// differential's finish, a log's start (Point.covers).
	From, To time.Time
	// Start is the point whose end is From; End the point whose end is To.
	Start, End string
	// Break, except on the last range, says why the moments after To,
	// up to the next range's From, cannot be restored.
	Break string
}

// Step is one backup a restore applies.
type Step struct {
	ID    string
	Kind  Kind
	Taken time.Time
}

// Plan is a restore sequence checked against the chain rules: a full, the
// differential that helps, then every log up to the target.
type Plan struct {
	Steps []Step
	// StopAt, when not zero, stops the last log at that moment (STOPAT);
	// otherwise the last step is restored whole.
	StopAt time.Time
	// StopAtMark or StopBeforeMark, when set, stop the last log at a
	// marked transaction, including it or not.
	StopAtMark, StopBeforeMark string
	// At is the moment the restored database is as of.
	At time.Time
}

// IDs returns the plan's recovery points in apply order.
func (p Plan) IDs() []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.ID
	}
	return out
}

// covers returns the last moment a log backup surely holds: when it
// started. A log backup reads the log up to some moment while it runs,
// which SQL Server does not record (the simulator reads it as the backup
// starts), so a transaction that committed while it ran may be in the
// next log backup only; the moments from its start to its finish are the
// next log's to restore (docs/mssqlsim.md). Without a start time it is
// its finish, as before coffer read the start; so it is for a log with
// bulk-logged changes, which SQL Server restores only whole. Any other
// point covers its finish: restored alone it is as of its end.
//
// The start is msdb's backup_start_date, a datetime, which SQL Server
// rounds to 1/300 s: it may be up to 1/600 s later than the start, so the
// moment taken is datetimeSlack before it, to the millisecond.
//
// A log whose recorded start and finish are the same moment ran within
// the datetime's precision: it covers its finish, as before.
func (pt Point) covers() time.Time {
	if pt.Kind != Log || pt.BulkLogged || pt.Started.IsZero() || !pt.Started.Before(pt.Taken) {
		return pt.Taken
	}
	return pt.Started.Add(-datetimeSlack).Truncate(time.Millisecond)
}

// datetimeSlack bounds how much later than the moment it stands for a
// datetime SQL Server recorded may be (rounded to 1/300 s).
const datetimeSlack = 2 * time.Millisecond

// window is the stretch one point makes restorable: (from, to] for a log,
// the single moment to for a full or differential. via is the point whose
// chain is restored before it (for a log), -1 for a base.
type window struct {
	from, to time.Time
	i, via   int
}

// reaches reports whether point i's chain reaches a full.
func (g *chainGraph) reaches(i int) bool {
	for n := 0; n <= len(g.pts); n++ {
		if g.dep[i] < 0 {
			return g.pts[i].Kind == Full || g.pts[i].Kind == CopyOnlyFull
		}
		i = g.dep[i]
	}
	return false // a loop
}

// windows returns what each restorable point covers, by end time.
func (g *chainGraph) windows() []window {
	var out []window
	for i, pt := range g.pts {
		if !g.reaches(i) {
			continue
		}
		switch pt.Kind {
		case Full, CopyOnlyFull, Differential:
			out = append(out, window{from: pt.Taken, to: pt.Taken, i: i, via: -1})
		case Log:
			// the earliest start: the log before it when that one is
			// restorable, else the base it starts from
			to := pt.covers()
			if p := g.prevLog(i, g.logs); p >= 0 && g.reaches(p) && g.pts[p].covers().Before(to) {
				out = append(out, window{from: g.pts[p].covers(), to: to, i: i, via: p})
			}
			if d := g.dep[i]; d >= 0 && g.pts[d].Kind != Log && g.pts[d].Taken.Before(to) {
				out = append(out, window{from: g.pts[d].Taken, to: to, i: i, via: d})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b window) int {
		if c := a.from.Compare(b.from); c != 0 {
			return c
		}
		return a.to.Compare(b.to)
	})
	return out
}

// Ranges returns the continuous stretches of time the points can restore
// the database to, oldest first, each with the reason it ends.
func Ranges(points []Point) []Range {
	g := newChainGraph(points)
	var out []Range
	for _, w := range g.windows() {
		if n := len(out); n > 0 && !w.from.After(out[n-1].To) {
			if w.to.After(out[n-1].To) {
				out[n-1].To, out[n-1].End = w.to, g.pts[w.i].ID
			}
			continue
		}
		start := g.pts[w.i].ID
		if w.via >= 0 {
			start = g.pts[w.via].ID
		}
		out = append(out, Range{From: w.from, To: w.to, Start: start, End: g.pts[w.i].ID})
	}
	for k := 0; k+1 < len(out); k++ {
		out[k].Break = g.breakBetween(out[k].To, out[k+1].From)
	}
	return out
}

// breakBetween says why no chain covers the moments after a and up to b:
// the break a full after a healed, or the first broken log or
// differential after a.
func (g *chainGraph) breakBetween(a, b time.Time) string {
	for _, pt := range g.pts {
		if pt.Taken.After(a) && !pt.Taken.After(b) && pt.HealsBreak != "" {
			return pt.HealsBreak
		}
	}
	for i, pt := range g.pts {
		if pt.Taken.After(a) && g.dep[i] < 0 && (pt.Kind == Log || pt.Kind == Differential) {
			return g.gap(i).Reason
		}
	}
	return fmt.Sprintf("no log backup covers %s to %s (log backups were paused, failed, or have expired)",
		a.UTC().Format(time.RFC3339), b.UTC().Format(time.RFC3339))
}

// chain returns the steps that restore point i whole.
func (g *chainGraph) chain(i int) []Step {
	var out []Step
	for j := i; j >= 0; j = g.dep[j] {
		out = append(out, Step{ID: g.pts[j].ID, Kind: g.pts[j].Kind, Taken: g.pts[j].Taken})
	}
	slices.Reverse(out)
	return out
}

// PlanAt plans a restore of the database as of moment t, to the
// millisecond SQL Server's STOPAT takes. It refuses, saying why and what
// can be reached instead, when t is before the first full, after the last
// log, in a gap of the chain, or inside a log backup that holds
// bulk-logged changes.
func PlanAt(points []Point, t time.Time) (Plan, error) {
	g := newChainGraph(points)
	ws := g.windows()
	if len(ws) == 0 {
		return Plan{}, refuse("no restorable backup: there is no full backup yet")
	}
	// a base that ends exactly at t; else the log window that holds t and
	// ends first
	best := -1
	for k, w := range ws {
		if w.via < 0 && w.to.Equal(t) {
			best = k
		}
	}
	if best < 0 {
		for k, w := range ws {
			if w.via < 0 || !w.from.Before(t) || w.to.Before(t) {
				continue
			}
			// the log that ends first; of two ways to it, the one from the
			// later point (the latest differential that helps)
			if best < 0 || w.to.Before(ws[best].to) || w.to.Equal(ws[best].to) && w.from.After(ws[best].from) {
				best = k
			}
		}
	}
	if best < 0 {
		return Plan{}, g.unreachable(t)
	}
	w := ws[best]
	if w.via < 0 {
		return Plan{Steps: g.chain(w.i), At: t}, nil
	}
	lg := g.pts[w.i]
	plan := Plan{Steps: append(g.chain(w.via), Step{ID: lg.ID, Kind: lg.Kind, Taken: lg.Taken}), At: t}
	if t.Before(lg.Taken) {
		if lg.BulkLogged {
			return Plan{}, refuse("%s is inside log backup %s (%s to %s), which holds bulk-logged changes: SQL Server restores it only whole (error 4327); restore to %s or to %s instead",
				stamp(t), lg.ID, stamp(w.from), stamp(lg.Taken), stamp(w.from), stamp(lg.Taken))
		}
		plan.StopAt = t
	}
	return plan, nil
}

// PlanMark plans a restore to the marked transaction name, including it
// (STOPATMARK) or, with before, not (STOPBEFOREMARK). When several
// transactions carry the name, the latest a backup holds is meant. It
// refuses when no log backup coffer keeps holds the mark, or the chain to
// it is broken.
func PlanMark(points []Point, name string, before bool) (Plan, error) {
	g := newChainGraph(points)
	found, at := -1, time.Time{}
	var known []string
	for i, pt := range g.pts {
		for _, m := range pt.Marks {
			if !slices.Contains(known, m.Name) {
				known = append(known, m.Name)
			}
			if m.Name == name && pt.Kind == Log && (found < 0 || m.Time.After(at)) {
				found, at = i, m.Time
			}
		}
	}
	if found < 0 {
		if len(known) == 0 {
			return Plan{}, refuse("no log backup holds a transaction marked %q (no kept log backup holds any mark)", name)
		}
		return Plan{}, refuse("no log backup holds a transaction marked %q; the kept log backups hold: %s", name, strings.Join(known, ", "))
	}
	lg := g.pts[found]
	if !g.reaches(found) {
		return Plan{}, refuse("the transaction marked %q is in log backup %s, whose chain is broken: %s", name, lg.ID, g.breakBefore(found))
	}
	if lg.BulkLogged {
		return Plan{}, refuse("the transaction marked %q is in log backup %s, which holds bulk-logged changes: SQL Server restores it only whole (error 4327)", name, lg.ID)
	}
	// the log before it when it continues a restorable log, else its base
	via := g.dep[found]
	if p := g.prevLog(found, g.logs); p >= 0 && g.reaches(p) {
		via = p
	}
	plan := Plan{Steps: append(g.chain(via), Step{ID: lg.ID, Kind: lg.Kind, Taken: lg.Taken}), At: at}
	if before {
		plan.StopBeforeMark = name
	} else {
		plan.StopAtMark = name
	}
	return plan, nil
}

// breakBefore says why point i's chain is broken.
func (g *chainGraph) breakBefore(i int) string {
	for n, j := 0, i; j >= 0 && n <= len(g.pts); n, j = n+1, g.dep[j] {
		if g.dep[j] < 0 {
			return g.gap(j).Reason
		}
	}
	return "the chain loops"
}

// PlanLatest plans a restore to the latest moment any chain reaches: the
// chain to the last range's end, each backup whole, so that it holds all
// the last backup holds. At is that range's end, the moment it holds
// surely (for a log, its start: Point.covers); what committed while the
// last log backup ran may be there too.
func PlanLatest(points []Point) (Plan, error) {
	rs := Ranges(points)
	if len(rs) == 0 {
		return Plan{}, refuse("no restorable backup: there is no full backup yet")
	}
	last := rs[len(rs)-1]
	p, err := PlanAt(points, last.To)
	if err != nil {
		return Plan{}, err
	}
	p.StopAt = time.Time{}
	return p, nil
}

// PlanPoint plans a restore to the end of recovery point id.
func PlanPoint(points []Point, id string) (Plan, error) {
	ids, err := Restorable(points, id)
	if err != nil {
		return Plan{}, err
	}
	g := newChainGraph(points)
	p := Plan{}
	for _, x := range ids {
		pt := g.pts[g.at[x]]
		p.Steps = append(p.Steps, Step{ID: pt.ID, Kind: pt.Kind, Taken: pt.Taken})
	}
	p.At = p.Steps[len(p.Steps)-1].Taken
	return p, nil
}

// unreachable explains why no chain reaches t.
func (g *chainGraph) unreachable(t time.Time) error {
	rs := Ranges(g.pts)
	first, last := rs[0], rs[len(rs)-1]
	switch {
	case t.Before(first.From):
		return refuse("%s is before the first full backup: the earliest moment that can be restored is %s", stamp(t), stamp(first.From))
	case t.After(last.To):
		return refuse("%s is after the last log backup: the latest moment that can be restored is %s (take a log backup to reach later)", stamp(t), stamp(last.To))
	}
	for k := 0; k+1 < len(rs); k++ {
		if t.After(rs[k].To) && t.Before(rs[k+1].From) {
			return refuse("%s falls in a break of the backup chain: the database can be restored up to %s and again from %s; between them, %s",
				stamp(t), stamp(rs[k].To), stamp(rs[k+1].From), rs[k].Break)
		}
	}
	return refuse("%s is not covered by any unbroken chain", stamp(t))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// refusal is a restore target no chain reaches. It reads as its reason and
// matches ErrBrokenChain.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }
func (r *refusal) Unwrap() error { return ErrBrokenChain }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// Labels of the test restores VerifyTargets picks.
const (
	VerifyLatest = "latest"
	VerifyRandom = "random moment"
)

// VerifyTarget is one test restore a verification runs.
type VerifyTarget struct {
	Label string
	Plan  Plan
}

// VerifyTargets picks a verification's test restores: the latest moment,
// and a moment (to the second) drawn from r across every restorable
// range, when the ranges span more than one moment.
func VerifyTargets(points []Point, r *rand.Rand) ([]VerifyTarget, error) {
	latest, err := PlanLatest(points)
	if err != nil {
		return nil, err
	}
	out := []VerifyTarget{{Label: VerifyLatest, Plan: latest}}
	var total time.Duration
	rs := Ranges(points)
	for _, rg := range rs {
		total += rg.To.Sub(rg.From)
	}
	if total < time.Second {
		return out, nil
	}
	pick := time.Duration(r.Int64N(int64(total)))
	for _, rg := range rs {
		if span := rg.To.Sub(rg.From); pick > span {
			pick -= span
			continue
		}
		at := rg.From.Add(pick).Truncate(time.Second)
		if at.Before(rg.From) {
			at = rg.From
		}
		p, err := PlanAt(points, at)
		if err != nil {
			return nil, fmt.Errorf("plan a test restore to %s: %w", stamp(at), err)
		}
		return append(out, VerifyTarget{Label: VerifyRandom, Plan: p}), nil
	}
	return out, nil
}
