package policy

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// at is the finish time of the fixture's n-th point (1-based).
func at(n int) time.Time {
	return time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC).Add(time.Duration(n) * 15 * time.Minute)
}

func TestRangesWhole(t *testing.T) {
	rs := Ranges(chainFixture())
	want := []Range{{From: at(1), To: at(14), Start: "F1", End: "L8"}}
	if !slices.Equal(rs, want) {
		t.Errorf("got %+v, want %+v", rs, want)
	}
}

func TestRangesBreaks(t *testing.T) {
	// without L4, L5 has nothing to continue: the chain breaks after L3
	// and starts again at the copy-only full, at F2 and with O1's logs
	rs := Ranges(without(chainFixture(), "L4"))
	var got []string
	for _, r := range rs {
		got = append(got, r.Start+"-"+r.End)
	}
	if want := []string{"F1-L3", "C1-C1", "F2-F2", "O1-L8"}; !slices.Equal(got, want) {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	if !rs[0].From.Equal(at(1)) || !rs[0].To.Equal(at(5)) || !rs[3].From.Equal(at(10)) || !rs[3].To.Equal(at(14)) {
		t.Errorf("times: %+v", rs)
	}
	if !strings.Contains(rs[0].Break, "log L5 begins at LSN 160") {
		t.Errorf("break after L3: %q, want the gap before L5", rs[0].Break)
	}
	if rs[3].Break != "" {
		t.Errorf("the last range has a break: %q", rs[3].Break)
	}

	// a full that healed a break says why the chain broke
	pts := without(chainFixture(), "L5", "L6", "L7", "L8", "D2")
	for i := range pts {
		if pts[i].ID == "F2" {
			pts[i].HealsBreak = "the database was restored over"
		}
	}
	rs = Ranges(pts)
	if len(rs) < 2 || rs[len(rs)-3].Break != "the database was restored over" {
		t.Errorf("ranges %+v: want the break before F2 to give F2's reason", rs)
	}
}

func TestPlanAt(t *testing.T) {
	pts := chainFixture()
	mid := func(a, b int) time.Time { return at(a).Add(at(b).Sub(at(a)) / 2) }
	tests := []struct {
		name   string
		t      time.Time
		steps  []string
		stopAt bool
	}{
		{"inside L2", mid(2, 3), []string{"F1", "L1", "L2"}, true},
		// L3 spans D1: before D1 the chain goes through L2, after it
		// through the differential
		{"inside L3 before D1", mid(3, 4), []string{"F1", "L1", "L2", "L3"}, true},
		{"inside L3 after D1", mid(4, 5), []string{"F1", "D1", "L3"}, true},
		{"end of L3", at(5), []string{"F1", "D1", "L3"}, false},
		{"the differential's end", at(4), []string{"F1", "D1"}, false},
		{"the full F2", at(9), []string{"F2"}, false},
		{"inside L8", mid(13, 14), []string{"O1", "D2", "L8"}, true},
	}
	for _, tt := range tests {
		p, err := PlanAt(pts, tt.t)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !slices.Equal(p.IDs(), tt.steps) || p.StopAt.IsZero() == tt.stopAt || !p.At.Equal(tt.t) {
			t.Errorf("%s: got %v stop at %v (as of %v), want %v with stop at %v", tt.name, p.IDs(), p.StopAt, p.At, tt.steps, tt.stopAt)
		}
		if tt.stopAt && !p.StopAt.Equal(tt.t) {
			t.Errorf("%s: stops at %v, want %v", tt.name, p.StopAt, tt.t)
		}
	}
	latest, err := PlanLatest(pts)
	if err != nil || !slices.Equal(latest.IDs(), []string{"O1", "D2", "L8"}) || !latest.At.Equal(at(14)) {
		t.Errorf("latest: %v as of %v (%v), want O1, D2, L8 as of %v", latest.IDs(), latest.At, err, at(14))
	}
}

func TestPlanAtRefusals(t *testing.T) {
	pts := without(chainFixture(), "L4")
	bulk := slices.Clone(chainFixture())
	for i := range bulk {
		if bulk[i].ID == "L7" {
			bulk[i].BulkLogged = true
		}
	}
	tests := []struct {
		name string
		pts  []Point
		t    time.Time
		want string
	}{
		{"before the first full", pts, at(1).Add(-time.Second), "before the first full backup: the earliest moment that can be restored is 2026-03-01T01:15:00.000Z"},
		{"after the last log", pts, at(14).Add(time.Millisecond), "after the last log backup: the latest moment that can be restored is 2026-03-01T04:30:00.000Z"},
		{"in a gap", pts, at(6), "falls in a break of the backup chain: the database can be restored up to 2026-03-01T02:15:00.000Z and again from 2026-03-01T02:45:00.000Z; between them, log L5 begins at LSN 160"},
		{"inside bulk-logged changes", bulk, at(12).Add(-time.Minute), "inside log backup L7 (2026-03-01T03:45:00.000Z to 2026-03-01T04:00:00.000Z), which holds bulk-logged changes"},
		{"no full", without(chainFixture(), "F1", "F2", "O1", "C1"), at(3), "no full backup yet"},
	}
	for _, tt := range tests {
		_, err := PlanAt(tt.pts, tt.t)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBrokenChain) {
			t.Errorf("%s: got %v, want a refusal containing %q", tt.name, err, tt.want)
		}
	}
	// the end of the bulk-logged log is fine: it restores whole
	if p, err := PlanAt(bulk, at(12)); err != nil || !p.StopAt.IsZero() {
		t.Errorf("end of the bulk-logged log: %v, %v; want a plan restoring it whole", p, err)
	}
}

// TestChainAcrossForkPoint: a log taken after a restore begins on the
// fork the restore came from and continues that fork's chain; a log that
// begins on another fork does not.
func TestChainAcrossForkPoint(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	pts := []Point{
		{ID: "F", Kind: Full, Taken: t0, FirstLSN: LSNFromUint64(100), CheckpointLSN: LSNFromUint64(100), LastLSN: LSNFromUint64(110), Fork: "a"},
		{ID: "L1", Kind: Log, Taken: t0.Add(time.Hour), FirstLSN: LSNFromUint64(90), LastLSN: LSNFromUint64(200), Fork: "a"},
		{ID: "L2", Kind: Log, Taken: t0.Add(2 * time.Hour), FirstLSN: LSNFromUint64(200), LastLSN: LSNFromUint64(300), Fork: "b", FirstFork: "a"},
		{ID: "X", Kind: Log, Taken: t0.Add(3 * time.Hour), FirstLSN: LSNFromUint64(200), LastLSN: LSNFromUint64(250), Fork: "c"},
	}
	if got, err := Restorable(pts, "L2"); err != nil || !slices.Equal(got, []string{"F", "L1", "L2"}) {
		t.Errorf("across the fork point: %v, %v; want F, L1, L2", got, err)
	}
	if _, err := Restorable(pts, "X"); !errors.Is(err, ErrBrokenChain) {
		t.Errorf("a log on an unrelated fork: %v, want a broken chain", err)
	}
}

func TestVerifyTargets(t *testing.T) {
	pts := without(chainFixture(), "L4")
	rs := Ranges(pts)
	for seed := range uint64(20) {
		ts, err := VerifyTargets(pts, rand.New(rand.NewPCG(seed, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 2 || ts[0].Label != VerifyLatest || !ts[0].Plan.At.Equal(at(14)) || ts[1].Label != VerifyRandom {
			t.Fatalf("seed %d: %+v, want the latest moment and a random one", seed, ts)
		}
		m := ts[1].Plan.At
		inside := false
		for _, r := range rs {
			inside = inside || !m.Before(r.From) && !m.After(r.To)
		}
		if !inside || m.Truncate(time.Second) != m {
			t.Errorf("seed %d: random moment %v is not a whole second inside the ranges %+v", seed, m, rs)
		}
	}
	// a single full: only the latest
	one := []Point{chainFixture()[0]}
	if ts, err := VerifyTargets(one, rand.New(rand.NewPCG(1, 1))); err != nil || len(ts) != 1 {
		t.Errorf("one full: %+v, %v; want the latest only", ts, err)
	}
}

func TestPlanMark(t *testing.T) {
	pts := chainFixture()
	for i := range pts {
		switch pts[i].ID {
		case "L2":
			pts[i].Marks = []Mark{{Name: "upgrade", LSN: LSNFromUint64(125), Time: at(3).Add(-time.Minute)}}
		case "L7":
			pts[i].Marks = []Mark{{Name: "upgrade", LSN: LSNFromUint64(205), Time: at(12).Add(-time.Minute)}, {Name: "payroll", LSN: LSNFromUint64(207), Time: at(12).Add(-30 * time.Second)}}
		}
	}
	// the latest transaction of the name
	p, err := PlanMark(pts, "upgrade", false)
	if err != nil || !slices.Equal(p.IDs(), []string{"O1", "L6", "L7"}) || p.StopAtMark != "upgrade" || p.StopBeforeMark != "" || !p.At.Equal(at(12).Add(-time.Minute)) {
		t.Errorf("at mark: %+v, %v; want O1, L6, L7 stopping at the mark", p, err)
	}
	p, err = PlanMark(pts, "payroll", true)
	if err != nil || p.StopBeforeMark != "payroll" || p.StopAtMark != "" {
		t.Errorf("before mark: %+v, %v", p, err)
	}
	if _, err := PlanMark(pts, "nope", false); err == nil || !strings.Contains(err.Error(), "hold: upgrade, payroll") {
		t.Errorf("an unknown mark: %v, want the marks that exist named", err)
	}
	// the chain to the mark is broken
	if _, err := PlanMark(without(pts, "L6"), "payroll", false); err == nil || !strings.Contains(err.Error(), "whose chain is broken") {
		t.Errorf("a mark behind a gap: %v", err)
	}
}

// TestLogCoversItsStart: a log backup surely holds only what committed
// before it started (its recorded start less the rounding of SQL Server's
// datetime), so the moments between a log's start and its finish are the
// next log's to restore, and after the last log's start there is nothing
// to restore to; a log with bulk-logged changes, restored only whole,
// still ends at its finish.
func TestLogCoversItsStart(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	pts := []Point{
		{ID: "F", Kind: Full, Taken: t0, FirstLSN: LSNFromUint64(50), LastLSN: LSNFromUint64(100), CheckpointLSN: LSNFromUint64(60), DatabaseBackupLSN: LSNFromUint64(0)},
		{ID: "L1", Kind: Log, Started: t0.Add(30 * time.Minute), Taken: t0.Add(31 * time.Minute), FirstLSN: LSNFromUint64(60), LastLSN: LSNFromUint64(200)},
		{ID: "L2", Kind: Log, Started: t0.Add(60 * time.Minute), Taken: t0.Add(62 * time.Minute), FirstLSN: LSNFromUint64(200), LastLSN: LSNFromUint64(300)},
	}
	end1, end2 := t0.Add(30*time.Minute-datetimeSlack), t0.Add(60*time.Minute-datetimeSlack)
	rs := Ranges(pts)
	if len(rs) != 1 || !rs[0].From.Equal(t0) || !rs[0].To.Equal(end2) || rs[0].End != "L2" {
		t.Fatalf("ranges %+v; want one, from F's finish to L2's start, less %v", rs, datetimeSlack)
	}
	for _, c := range []struct {
		at    time.Time
		steps []string
	}{
		{end1, []string{"F", "L1"}},
		{end1.Add(time.Millisecond), []string{"F", "L1", "L2"}}, // while L1 ran: L2 holds it
		{t0.Add(31 * time.Minute), []string{"F", "L1", "L2"}},
		{end2, []string{"F", "L1", "L2"}},
	} {
		p, err := PlanAt(pts, c.at)
		if err != nil || !slices.Equal(p.IDs(), c.steps) || !p.StopAt.Equal(c.at) || !p.At.Equal(c.at) {
			t.Errorf("PlanAt(%v) = %+v (%v); want %v stopped there", c.at, p, err, c.steps)
		}
	}
	for _, at := range []time.Time{end2.Add(time.Millisecond), t0.Add(61 * time.Minute)} {
		if p, err := PlanAt(pts, at); err == nil {
			t.Errorf("PlanAt(%v), while the last log ran = %+v; want it refused", at, p)
		}
	}
	if p, err := PlanLatest(pts); err != nil || !slices.Equal(p.IDs(), []string{"F", "L1", "L2"}) || !p.At.Equal(end2) || !p.StopAt.IsZero() {
		t.Errorf("PlanLatest = %+v (%v); want L2 whole, as of its start at least", p, err)
	}
	// a log that ran within the datetime's precision covers its finish
	pts[2].Started = pts[2].Taken
	if rs := Ranges(pts); len(rs) != 1 || !rs[0].To.Equal(pts[2].Taken) {
		t.Errorf("ranges %+v; want one, to L2's finish, which is its start", rs)
	}
	pts[2].Started, pts[2].BulkLogged = t0.Add(60*time.Minute), true
	if p, err := PlanLatest(pts); err != nil || !p.At.Equal(t0.Add(62*time.Minute)) || !p.StopAt.IsZero() {
		t.Errorf("PlanLatest with bulk-logged L2 = %+v (%v); want L2 whole, as of its finish", p, err)
	}
}
