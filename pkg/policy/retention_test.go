package policy

import (
	"fmt"
	"maps"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func loadLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// scheduledFulls returns a scheduled full at hour:00 in loc on every day
// from..to (inclusive) that keep allows.
func scheduledFulls(loc *time.Location, from, to time.Time, hour int, keep func(time.Time) bool) []Point {
	var out []Point
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		at := time.Date(d.Year(), d.Month(), d.Day(), hour, 0, 0, 0, loc)
		if keep == nil || keep(at) {
			out = append(out, Point{ID: "F" + at.Format("20060102"), Kind: Full, Taken: at})
		}
	}
	return out
}

func onSunday(t time.Time) bool { return t.Weekday() == time.Sunday }

func TestExpiryGFS(t *testing.T) {
	utc := time.UTC
	la := loadLoc(t, "America/Los_Angeles")
	akl := loadLoc(t, "Pacific/Auckland")
	tokyo := loadLoc(t, "Asia/Tokyo")
	sunday := time.Sunday
	date := func(y int, m time.Month, d, h int, loc *time.Location) time.Time {
		return time.Date(y, m, d, h, 0, 0, 0, loc)
	}

	// weekly Sunday 01:00 UTC; 14 days, 4 weeks, first Sunday x2 months, January x3 years
	weekly := Policy{Name: "weekly", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Retention: Retention{Full: Days(14), Weekly: &WeeklyRange{Day: time.Sunday, Count: 4},
			Monthly: &MonthlyRange{Day: &sunday, Count: 2}, Yearly: &YearlyRange{Month: time.January, Count: 3}}}
	sundays := func(from, to time.Time) []Point { return scheduledFulls(utc, from, to, 1, onSunday) }
	// daily 20:00 in Los Angeles: 7 days, Sunday x2 weeks, first full of the month x1
	daily := Policy{Name: "la", TimeZone: "America/Los_Angeles", Full: Schedule{Frequency: Daily, Hour: 20},
		Retention: Retention{Full: Days(7), Weekly: &WeeklyRange{Day: time.Sunday, Count: 2}, Monthly: &MonthlyRange{Count: 1}}}
	days := func(from, to time.Time) []Point { return scheduledFulls(la, from, to, 20, nil) }
	// daily 09:00 in Auckland, first full of January x2 years (no monthly range)
	auckland := Policy{Name: "akl", TimeZone: "Pacific/Auckland", Full: Schedule{Frequency: Daily, Hour: 9},
		Retention: Retention{Full: Days(7), Yearly: &YearlyRange{Month: time.January, Count: 2}}}
	// weekly Sunday 08:00 in Tokyo: Saturday 23:00 in UTC
	japan := Policy{Name: "tokyo", TimeZone: "Asia/Tokyo", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 8},
		Retention: Retention{Full: Days(7), Weekly: &WeeklyRange{Day: time.Sunday, Count: 4}}}

	jan3 := date(2027, 1, 3, 1, utc) // 2027 begins on a Friday
	onDemandEarly := Point{ID: "OD", Kind: Full, OnDemand: true, Taken: date(2027, 1, 10, 0, utc)}
	tests := []struct {
		name     string
		p        Policy
		pt       Point
		earlier  []Point
		want     time.Time
		wantTags []string
	}{
		{"first Sunday of January is weekly, monthly and yearly", weekly, Point{Kind: Full, Taken: jan3},
			sundays(date(2026, 11, 1, 0, utc), date(2027, 1, 2, 0, utc)),
			date(2030, 1, 3, 1, utc), []string{TagDaily, TagWeekly, TagMonthly, TagYearly}},
		{"second Sunday of January is weekly only", weekly, Point{Kind: Full, Taken: date(2027, 1, 10, 1, utc)},
			sundays(date(2026, 11, 1, 0, utc), date(2027, 1, 9, 0, utc)),
			date(2027, 2, 7, 1, utc), []string{TagDaily, TagWeekly}},
		{"first Sunday of February follows January's", weekly, Point{Kind: Full, Taken: date(2027, 2, 7, 1, utc)},
			sundays(date(2026, 11, 1, 0, utc), date(2027, 2, 6, 0, utc)),
			date(2027, 4, 7, 1, utc), []string{TagDaily, TagWeekly, TagMonthly}},
		{"December's monthly runs into the next year", weekly, Point{Kind: Full, Taken: date(2026, 12, 6, 1, utc)},
			sundays(date(2026, 11, 1, 0, utc), date(2026, 12, 5, 0, utc)),
			date(2027, 2, 6, 1, utc), []string{TagDaily, TagWeekly, TagMonthly}},
		{"a second full the same Sunday is daily only", weekly, Point{Kind: Full, Taken: date(2027, 1, 10, 3, utc)},
			sundays(date(2027, 1, 3, 0, utc), date(2027, 1, 10, 0, utc)),
			date(2027, 1, 24, 3, utc), []string{TagDaily}},
		{"an on-demand full earlier that Sunday takes no range", weekly, Point{Kind: Full, Taken: date(2027, 1, 10, 1, utc)},
			append(sundays(date(2027, 1, 3, 0, utc), date(2027, 1, 9, 0, utc)), onDemandEarly),
			date(2027, 2, 7, 1, utc), []string{TagDaily, TagWeekly}},
		{"a missed first Sunday moves monthly to the next", weekly, Point{Kind: Full, Taken: date(2027, 2, 14, 1, utc)},
			sundays(date(2027, 1, 3, 0, utc), date(2027, 1, 31, 0, utc)),
			date(2027, 4, 14, 1, utc), []string{TagDaily, TagWeekly, TagMonthly}},
		{"a scheduled copy-only full is never tagged", weekly, Point{Kind: CopyOnlyFull, Taken: jan3}, nil,
			date(2027, 1, 17, 1, utc), nil},
		{"an on-demand full is never tagged", weekly, Point{Kind: Full, OnDemand: true, Taken: jan3}, nil,
			jan3.Add(45 * 24 * time.Hour), nil},

		{"Saturday evening in Los Angeles is January though February in UTC", daily, Point{Kind: Full, Taken: date(2026, 1, 31, 20, la)},
			days(date(2026, 1, 1, 0, la), date(2026, 1, 30, 0, la)),
			date(2026, 2, 7, 20, la), []string{TagDaily}},
		{"the first full of February in Los Angeles, a Sunday", daily, Point{Kind: Full, Taken: date(2026, 2, 1, 20, la)},
			days(date(2026, 1, 1, 0, la), date(2026, 1, 31, 0, la)),
			date(2026, 3, 1, 20, la), []string{TagDaily, TagWeekly, TagMonthly}},
		{"the same full taken in UTC is judged in the policy's zone", daily, Point{Kind: Full, Taken: date(2026, 2, 2, 4, utc)},
			days(date(2026, 1, 1, 0, la), date(2026, 1, 31, 0, la)),
			date(2026, 3, 1, 20, la), []string{TagDaily, TagWeekly, TagMonthly}},
		{"Saturday in Los Angeles is not weekly though Sunday in UTC", daily, Point{Kind: Full, Taken: date(2026, 2, 7, 20, la)},
			days(date(2026, 2, 1, 0, la), date(2026, 2, 6, 0, la)),
			date(2026, 2, 14, 20, la), []string{TagDaily}},
		{"a calendar month across the spring change is 20:00 local", daily, Point{Kind: Full, Taken: date(2026, 3, 1, 20, la)},
			days(date(2026, 2, 1, 0, la), date(2026, 2, 28, 0, la)),
			date(2026, 4, 1, 20, la), []string{TagDaily, TagWeekly, TagMonthly}},

		{"New Year in Auckland while still December in UTC", auckland, Point{Kind: Full, Taken: date(2027, 1, 1, 9, akl)},
			scheduledFulls(akl, date(2026, 12, 1, 0, akl), date(2026, 12, 31, 0, akl), 9, nil),
			date(2029, 1, 1, 9, akl), []string{TagDaily, TagYearly}},
		{"the last full of December in Auckland", auckland, Point{Kind: Full, Taken: date(2026, 12, 31, 9, akl)},
			scheduledFulls(akl, date(2026, 12, 1, 0, akl), date(2026, 12, 30, 0, akl), 9, nil),
			date(2027, 1, 7, 9, akl), []string{TagDaily}},
		{"Sunday in Tokyo is Saturday in UTC", japan, Point{Kind: Full, Taken: date(2026, 2, 28, 23, utc)}, nil,
			date(2026, 3, 29, 8, tokyo), []string{TagDaily, TagWeekly}},
	}
	for _, tt := range tests {
		got, tags := tt.p.Expiry(tt.pt, tt.earlier)
		if !got.Equal(tt.want) || !slices.Equal(tags, tt.wantTags) {
			t.Errorf("%s: got %v %v, want %v %v", tt.name, got, tags, tt.want, tt.wantTags)
		}
	}
}

func TestExpiryOnDemandAndKinds(t *testing.T) {
	taken := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	withAll := Policy{Name: "all", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}},
		Differential: &Schedule{Days: []time.Weekday{time.Monday}}, Log: &LogSchedule{Every: Duration(15 * time.Minute)},
		Retention: Retention{Full: Days(14), Differential: Days(12), Log: Days(10)}}
	fullsOnly := Policy{Name: "fulls", Full: Schedule{Frequency: Daily}, Retention: Retention{Full: Days(30)}}
	ownRules := withAll
	ownRules.OnDemand = OnDemandRules{Full: Days(60), Log: Days(20)}
	tooShort := withAll
	tooShort.OnDemand = OnDemandRules{Full: Days(2)}
	tooShort.Retention.Log = Days(1)

	tests := []struct {
		name     string
		p        Policy
		kind     Kind
		onDemand bool
		want     time.Duration
	}{
		{"scheduled differential", withAll, Differential, false, 12 * day},
		{"scheduled log", withAll, Log, false, 10 * day},
		{"scheduled copy-only full keeps the full retention, untagged", withAll, CopyOnlyFull, false, 14 * day},
		{"on-demand full defaults to 45 days", withAll, Full, true, 45 * day},
		{"on-demand copy-only full defaults to 45 days", withAll, CopyOnlyFull, true, 45 * day},
		{"on-demand log defaults to the policy's log retention", withAll, Log, true, 10 * day},
		{"on-demand differential keeps the differential retention", withAll, Differential, true, 12 * day},
		{"on-demand log when the policy keeps no logs", fullsOnly, Log, true, 45 * day},
		{"on-demand differential when the policy takes none", fullsOnly, Differential, true, 45 * day},
		{"on-demand full under its own rule", ownRules, Full, true, 60 * day},
		{"on-demand copy-only under its own rule", ownRules, CopyOnlyFull, true, 60 * day},
		{"on-demand log under its own rule", ownRules, Log, true, 20 * day},
		{"an on-demand rule below the minimum is raised to 7 days", tooShort, Full, true, 7 * day},
		{"a log retention below the minimum is raised to 7 days", tooShort, Log, false, 7 * day},
	}
	for _, tt := range tests {
		got, tags := tt.p.Expiry(Point{Kind: tt.kind, OnDemand: tt.onDemand, Taken: taken}, nil)
		if d := got.Sub(taken); d != tt.want || tags != nil {
			t.Errorf("%s: got %v %v, want %v and no tags", tt.name, d, tags, tt.want)
		}
	}
}

func TestRetainKeepsDependencies(t *testing.T) {
	// full and differential kept 7 days, logs 30: the logs hold both
	p := Policy{Name: "p", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Differential: &Schedule{Days: []time.Weekday{time.Monday}, Hour: 1}, Log: &LogSchedule{Every: Duration(time.Hour)},
		Retention: Retention{Full: Days(7), Differential: Days(7), Log: Days(30)}}
	t0 := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	var points []Point
	add := func(id string, k Kind, at time.Duration, first, last, base uint64) {
		pt := Point{ID: id, Kind: k, Taken: t0.Add(at), FirstLSN: LSNFromUint64(first), LastLSN: LSNFromUint64(last),
			CheckpointLSN: LSNFromUint64(first), DifferentialBaseLSN: LSNFromUint64(base)}
		pt.Expires, pt.Tags = p.Expiry(pt, points)
		points = append(points, pt)
	}
	h := time.Hour
	add("F", Full, 0, 100, 110, 0)                // expires day 7
	add("L1", Log, h, 90, 120, 0)                 // on F; day 30 + 1h
	add("C", CopyOnlyFull, 2*h, 125, 126, 0)      // day 7 + 2h; no base
	add("L2", Log, 3*h, 120, 130, 0)              // on L1 (C is no base); day 30 + 3h
	add("D", Differential, 24*h, 140, 150, 100)   // on F; day 8
	add("L3", Log, 25*h, 130, 160, 0)             // on D; day 31 + 1h
	add("L4", Log, 26*h, 160, 170, 0)             // on L3; day 31 + 2h
	add("F2", Full, 7*24*h, 180, 190, 0)          // day 14
	add("L5", Log, 7*24*h+h, 170, 200, 0)         // on F2; day 37 + 1h
	add("D2", Differential, 8*24*h, 210, 220, 50) // base missing: a gap; day 15

	day := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(24*h))) }
	tests := []struct {
		now  time.Time
		keep []string
	}{
		{day(6), []string{"F", "L1", "C", "L2", "D", "L3", "L4", "F2", "L5", "D2"}},
		// C's own week is over; nothing depends on it
		{day(7.5), []string{"F", "L1", "L2", "D", "L3", "L4", "F2", "L5", "D2"}},
		// F and D are past their own expiry, held by the logs
		{day(20), []string{"F", "L1", "L2", "D", "L3", "L4", "F2", "L5"}},
		// L1 and L2 gone (30 days + 1h, + 3h); D and so F still held by L3, L4
		{day(30.5), []string{"F", "D", "L3", "L4", "F2", "L5"}},
		// the differential goes with its last log, and the full with it
		{day(31).Add(2*h - 1), []string{"F", "D", "L3", "L4", "F2", "L5"}},
		{day(31).Add(2 * h), []string{"F2", "L5"}},
		{day(37).Add(h), nil},
	}
	for _, tt := range tests {
		keep, expire := Retain(points, tt.now)
		if !slices.Equal(keep, tt.keep) {
			t.Errorf("at %v: got keep %v, want %v", tt.now.Sub(t0), keep, tt.keep)
		}
		if len(keep)+len(expire) != len(points) {
			t.Errorf("at %v: got %d kept and %d expired, want %d in all", tt.now.Sub(t0), len(keep), len(expire), len(points))
		}
	}
	// walking hour by hour: a differential is never kept without its full,
	// and never dropped while a log that needs it is kept
	for now := t0; now.Before(day(40)); now = now.Add(h) {
		keep, _ := Retain(points, now)
		kept := func(id string) bool { return slices.Contains(keep, id) }
		if kept("D") && !kept("F") {
			t.Fatalf("at %v: differential D kept without its full", now.Sub(t0))
		}
		if (kept("L3") || kept("L4")) && !kept("D") {
			t.Fatalf("at %v: D dropped before a log that needs it", now.Sub(t0))
		}
	}
}

func TestRetainIsDeterministic(t *testing.T) {
	points := chainFixture()
	now := points[0].Taken.Add(time.Hour)
	for k := range points {
		points[k].Expires = now // everything is past its own expiry ...
	}
	points[len(points)-1].Expires = now.Add(time.Hour) // ... but L8, on D2, on O1
	points[3].Expires = time.Time{}                    // and D1, never computed: kept
	wantKeep := []string{"F1", "D1", "O1", "D2", "L8"}
	wantExpire := []string{"L7", "L6", "F2", "L5", "C1", "L4", "L3", "L2", "L1"}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20 {
		keep, expire := Retain(points, now)
		if !slices.Equal(keep, wantKeep) || !slices.Equal(expire, wantExpire) {
			t.Fatalf("got keep %v expire %v, want %v and %v", keep, expire, wantKeep, wantExpire)
		}
		rng.Shuffle(len(points), func(a, b int) { points[a], points[b] = points[b], points[a] })
	}
}

// sim is a database backed up under a policy, slot by slot, with LSNs
// the way SQL Server hands them out (rules in REFERENCE.md). Each point
// gets its expiry from the policy against the catalog when it is taken.
type sim struct {
	p   Policy
	rng *rand.Rand // nil: nothing fails, no on-demand backups, data backups take 10 minutes

	lsn        uint64 // next LSN, above simBase
	chainStart uint64 // where the log chain begins; 0 before the first full
	lastLog    uint64
	diffBase   uint64
	seq        int

	all     []Point // every point taken
	catalog []Point // the points retention kept
}

// simBase puts the simulated LSNs above 2^64, where real ones are.
var simBase = LSN{hi: 2276, lo: 0x1234}

func simLSN(n uint64) LSN {
	lo, c := bits.Add64(simBase.lo, n, 0)
	return LSN{hi: simBase.hi + c, lo: lo}
}

func (s *sim) chance(oneIn int) bool { return s.rng != nil && s.rng.IntN(oneIn) == 0 }

func (s *sim) minutes(lo, hi, fixed int) time.Duration {
	if s.rng == nil {
		return time.Duration(fixed) * time.Minute
	}
	return time.Duration(lo+s.rng.IntN(hi-lo+1)) * time.Minute
}

// activity is how far the LSN moves between slots.
func (s *sim) activity() uint64 {
	if s.rng == nil {
		return 40
	}
	return 1 + s.rng.Uint64N(500)
}

func (s *sim) take(pt Point) {
	s.seq++
	pt.ID = fmt.Sprintf("%05d-%s", s.seq, map[Kind]string{Full: "full", CopyOnlyFull: "copy", Differential: "diff", Log: "log"}[pt.Kind])
	pt.Fork = "5f1c0c52-0000-4000-8000-000000000001"
	pt.Expires, pt.Tags = s.p.Expiry(pt, s.catalog)
	s.all = append(s.all, pt)
	s.catalog = append(s.catalog, pt)
}

func (s *sim) log(at time.Time, onDemand bool) {
	first := s.lastLog
	if first == 0 {
		first = s.chainStart
	}
	s.lsn++ // the backup's own record
	s.lastLog = s.lsn
	s.take(Point{Kind: Log, Taken: at, OnDemand: onDemand, FirstLSN: simLSN(first), LastLSN: simLSN(s.lsn),
		DatabaseBackupLSN: simLSN(s.diffBase)})
}

func (s *sim) data(k Kind, at time.Time, onDemand bool) {
	s.lsn++
	ckpt := s.lsn
	s.lsn += 3
	pt := Point{Kind: k, Taken: at, OnDemand: onDemand, FirstLSN: simLSN(ckpt), CheckpointLSN: simLSN(ckpt),
		LastLSN: simLSN(s.lsn), DatabaseBackupLSN: simLSN(s.diffBase)}
	switch k {
	case Differential:
		pt.DifferentialBaseLSN = simLSN(s.diffBase)
	case Full:
		if s.chainStart == 0 {
			s.chainStart, pt.BeginsChain = ckpt, true
		}
		s.diffBase = ckpt
	}
	if s.diffBase == 0 {
		pt.DatabaseBackupLSN = LSN{}
	}
	s.take(pt)
}

// run backs up every 15-minute slot in [start, end): the slot's log
// first, then the full or differential due then. At 12:00 UTC each day it
// applies Retain at now = 12:01, calls check first, and drops what expired.
func (s *sim) run(start, end time.Time, check func(now time.Time, catalog []Point, keep, expire []string)) {
	s.lsn = 1000
	for slot := start; slot.Before(end); slot = slot.Add(15 * time.Minute) {
		s.lsn += s.activity()
		if s.chainStart != 0 && !s.chance(50) {
			s.log(slot, false)
		}
		switch {
		case s.p.LastFull(slot).Equal(slot):
			if !s.chance(30) {
				s.data(Full, slot.Add(s.minutes(1, 14, 10)), false)
			}
		case s.p.LastDifferential(slot).Equal(slot):
			if s.diffBase != 0 && !s.chance(30) {
				s.data(Differential, slot.Add(s.minutes(1, 14, 10)), false)
			}
		case s.chance(400):
			at := slot.Add(s.minutes(1, 14, 0))
			switch k := []Kind{Full, CopyOnlyFull, Differential, Log}[s.rng.IntN(4)]; {
			case k == Log && s.chainStart != 0:
				s.log(at, true)
			case k == Differential && s.diffBase != 0, k == Full, k == CopyOnlyFull:
				s.data(k, at, true)
			}
		}
		if slot.UTC().Hour() == 12 && slot.Minute() == 0 && check != nil {
			now := slot.Add(time.Minute)
			keep, expire := Retain(s.catalog, now)
			check(now, s.catalog, keep, expire)
			kept := make(map[string]bool, len(keep))
			for _, id := range keep {
				kept[id] = true
			}
			s.catalog = slices.DeleteFunc(s.catalog, func(p Point) bool { return !kept[p.ID] })
		}
	}
}

// gfsPolicy is the policy: weekly full Sunday 01:00, a
// differential 01:00 Monday to Saturday, a log every 15 minutes; fulls
// kept 14 days, Sundays 4 weeks, first Sundays 2 months, differentials 14
// days, logs 7.
func gfsPolicy(zone string) Policy {
	sunday := time.Sunday
	return Policy{Name: "gfs", TimeZone: zone,
		Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Differential: &Schedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday},
			Hour: 1},
		Log: &LogSchedule{Every: Duration(15 * time.Minute)},
		Retention: Retention{Full: Days(14), Weekly: &WeeklyRange{Day: time.Sunday, Count: 4},
			Monthly: &MonthlyRange{Day: &sunday, Count: 2}, Differential: Days(14), Log: Days(7)},
	}
}

// checkRetained asserts what Retain promises at now: everything unexpired
// is kept, so is everything a kept point needs, the expire order deletes
// dependents first, and every kept point (or a sample, when sample > 0) is
// restorable from kept points alone, by a chain that obeys the chain rules.
func checkRetained(t *testing.T, now time.Time, catalog []Point, keep, expire []string, rng *rand.Rand, sample int) {
	t.Helper()
	if len(keep)+len(expire) != len(catalog) {
		t.Fatalf("at %v: got %d kept + %d expired, want %d", now, len(keep), len(expire), len(catalog))
	}
	isKept := make(map[string]bool, len(keep))
	for _, id := range keep {
		isKept[id] = true
	}
	for _, pt := range catalog {
		if now.Before(pt.Expires) && !isKept[pt.ID] {
			t.Fatalf("at %v: %s expired before %v", now, pt.ID, pt.Expires)
		}
	}
	deps := Dependencies(catalog)
	for _, id := range keep {
		for _, d := range deps[id] {
			if !isKept[d] {
				t.Fatalf("at %v: kept %s needs %s, which expired", now, id, d)
			}
		}
	}
	pos := make(map[string]int, len(expire))
	for k, id := range expire {
		pos[id] = k
	}
	for _, id := range expire {
		for _, d := range deps[id] {
			if at, ok := pos[d]; ok && at < pos[id] {
				t.Fatalf("at %v: expire lists %s before %s, which needs it", now, d, id)
			}
		}
	}
	var kept []Point
	byID := make(map[string]Point)
	for _, pt := range catalog {
		if isKept[pt.ID] {
			kept = append(kept, pt)
			byID[pt.ID] = pt
		}
	}
	if g := Gaps(kept); len(g) > 0 {
		t.Fatalf("at %v: kept points have gaps %+v", now, g)
	}
	ids := keep
	if sample > 0 && len(keep) > sample {
		ids = nil
		for range sample {
			ids = append(ids, keep[rng.IntN(len(keep))])
		}
	}
	for _, id := range ids {
		chain, err := Restorable(kept, id)
		if err != nil {
			t.Fatalf("at %v: kept %s: %v", now, id, err)
		}
		if err := obeysChainRules(byID, chain, id); err != nil {
			t.Fatalf("at %v: kept %s: chain %v: %v", now, id, chain, err)
		}
	}
}

// obeysChainRules checks a restore sequence against REFERENCE.md's chain
// rules directly, not through Dependencies.
func obeysChainRules(byID map[string]Point, chain []string, id string) error {
	if len(chain) == 0 || chain[len(chain)-1] != id {
		return fmt.Errorf("does not end at %s", id)
	}
	for _, c := range chain {
		if _, ok := byID[c]; !ok {
			return fmt.Errorf("%s is not a kept point", c)
		}
	}
	full := byID[chain[0]]
	if full.Kind != Full && !(full.Kind == CopyOnlyFull && len(chain) == 1) {
		return fmt.Errorf("starts with a %s", full.Kind)
	}
	base, k := full, 1
	if k < len(chain) && byID[chain[k]].Kind == Differential {
		if d := byID[chain[k]]; d.DifferentialBaseLSN != full.CheckpointLSN {
			return fmt.Errorf("differential %s has base %s, not %s", d.ID, d.DifferentialBaseLSN, full.CheckpointLSN)
		}
		base, k = byID[chain[k]], k+1
	}
	for prev := (Point{}); k < len(chain); k++ {
		l := byID[chain[k]]
		switch {
		case l.Kind != Log:
			return fmt.Errorf("%s, a %s, among the logs", l.ID, l.Kind)
		case prev.ID == "" && (base.LastLSN.Less(l.FirstLSN) || !base.LastLSN.Less(l.LastLSN)):
			return fmt.Errorf("first log %s (%s..%s) does not span %s's end %s", l.ID, l.FirstLSN, l.LastLSN, base.ID, base.LastLSN)
		case prev.ID != "" && l.FirstLSN != prev.LastLSN:
			return fmt.Errorf("log %s begins at %s, %s ends at %s", l.ID, l.FirstLSN, prev.ID, prev.LastLSN)
		}
		prev = l
	}
	return nil
}

// TestRetainProperty drives random 60-day histories of the policy
// (backups that fail, backups that take 1 to 14 minutes, on-demand
// backups of every kind, two zones), pruning daily, and checks Retain's
// promises each day: see checkRetained.
func TestRetainProperty(t *testing.T) {
	seeds := 4
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		zone := []string{"", "Europe/Berlin"}[seed%2]
		t.Run(fmt.Sprintf("seed %d %s", seed, zone), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 0xc0ffee))
			s := &sim{p: gfsPolicy(zone), rng: rng}
			start := time.Date(2026, 2, 20+seed, 0, 0, 0, 0, time.UTC)
			end := start.AddDate(0, 0, 60)
			s.run(start, end, func(now time.Time, catalog []Point, keep, expire []string) {
				checkRetained(t, now, catalog, keep, expire, rng, 8)
			})
			keep, expire := Retain(s.catalog, end)
			checkRetained(t, end, s.catalog, keep, expire, rng, 0)
			// pruning day by day kept what one pass over all history keeps
			if all, _ := Retain(s.all, end); !slices.Equal(all, keep) {
				t.Errorf("got %d kept from all history, want the %d kept by daily pruning", len(all), len(keep))
			}
		})
	}
}

func countKinds(points []Point, ids []string) map[Kind]int {
	kind := make(map[string]Kind)
	for _, p := range points {
		kind[p.ID] = p.Kind
	}
	out := make(map[Kind]int)
	for _, id := range ids {
		out[kind[id]]++
	}
	return out
}

// TestSixtyDays is the end-to-end case, computed by hand. The
// simulation runs from Sunday 2026-03-01 00:00 UTC to Thursday 2026-04-30
// 00:00 (60 days), pruning daily; logs are taken at each slot, fulls and
// differentials finish at 01:10 (after the 01:00 log, so the 01:15 log
// is the first after them). At the end (now = 2026-04-30 00:00):
//
// Fulls, the Sundays Mar 1, 8, 15, 22, 29, Apr 5, 12, 19, 26 (9 in all),
// all weekly (28 days); Mar 1 and Apr 5 also monthly (2 months):
//   - Mar 1: monthly to May 1 01:10: kept.
//   - Mar 8, 15, 22, 29: weekly to Apr 5, 12, 19, 26 01:10: past. What needs
//     them ended sooner: their differentials (14 days) by Apr 18 01:10,
//     their logs (7 days) by Apr 12. Expired.
//   - Apr 5 (monthly to Jun 5), 12, 19, 26 (weekly to May 10, 17, 24): kept.
//     5 fulls.
//
// Differentials, Mon-Sat at 01:10, 14 days: kept when taken after Apr 16
// 00:00: Apr 16, 17, 18, 20-25, 27, 28, 29 = 3 + 6 + 3 = 12. No older one
// is needed: the oldest kept log leads back to Apr 22's.
//
// Logs, 7 days: kept when taken after Apr 23 00:00, the slots from 00:15
// to Apr 29 23:45 (671). The first of them continues the chain that began
// at Apr 22's differential: every log from Apr 22 01:15 (the first after
// it) is needed, 92 more (01:15 to 23:45 is 91 slots, and Apr 23 00:00,
// whose own week ended exactly at now). 763 logs, Apr 22 01:15 to Apr 29
// 23:45.
func TestSixtyDays(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 0, 60)
	s := &sim{p: gfsPolicy("")}
	s.run(start, end, func(now time.Time, catalog []Point, keep, expire []string) {
		checkRetained(t, now, catalog, keep, expire, rand.New(rand.NewPCG(1, 1)), 10)
	})
	// taken: 9 fulls, 60-9 = 51 differentials, a log each slot but the
	// five before the first full (00:00 to 01:00 on Mar 1)
	if got, want := countKinds(s.all, idsOf(s.all)), map[Kind]int{Full: 9, Differential: 51, Log: 60*96 - 5}; !maps.Equal(got, want) {
		t.Fatalf("taken: got %v, want %v", got, want)
	}
	keep, expire := Retain(s.catalog, end)
	checkRetained(t, end, s.catalog, keep, expire, nil, 0)
	if all, _ := Retain(s.all, end); !slices.Equal(all, keep) {
		t.Errorf("got %d kept from all history, want the %d kept by daily pruning", len(all), len(keep))
	}
	got := countKinds(s.all, keep)
	t.Logf("kept at %v: %d fulls, %d differentials, %d logs", end, got[Full], got[Differential], got[Log])
	if want := map[Kind]int{Full: 5, Differential: 12, Log: 763}; !maps.Equal(got, want) {
		t.Errorf("kept: got %v, want %v", got, want)
	}

	byKind := make(map[Kind][]string)
	for _, p := range s.all {
		if slices.Contains(keep, p.ID) {
			byKind[p.Kind] = append(byKind[p.Kind], p.Taken.Format("Jan 2 15:04"))
		}
	}
	wantFulls := []string{"Mar 1 01:10", "Apr 5 01:10", "Apr 12 01:10", "Apr 19 01:10", "Apr 26 01:10"}
	if !slices.Equal(byKind[Full], wantFulls) {
		t.Errorf("fulls: got %v, want %v", byKind[Full], wantFulls)
	}
	var wantDiffs []string
	for _, d := range []int{16, 17, 18, 20, 21, 22, 23, 24, 25, 27, 28, 29} {
		wantDiffs = append(wantDiffs, fmt.Sprintf("Apr %d 01:10", d))
	}
	if !slices.Equal(byKind[Differential], wantDiffs) {
		t.Errorf("differentials: got %v, want %v", byKind[Differential], wantDiffs)
	}
	if logs := byKind[Log]; len(logs) == 0 || logs[0] != "Apr 22 01:15" || logs[len(logs)-1] != "Apr 29 23:45" {
		t.Errorf("logs: got %d from %v, want Apr 22 01:15 to Apr 29 23:45", len(logs), logs[:min(1, len(logs))])
	}
	for _, p := range s.all {
		if p.Kind == Full && p.Taken.Day() == 1 && !slices.Equal(p.Tags, []string{TagDaily, TagWeekly, TagMonthly}) {
			t.Errorf("Mar 1 full: got tags %v, want daily, weekly, monthly", p.Tags)
		}
	}
}

func idsOf(points []Point) []string {
	out := make([]string, len(points))
	for k, p := range points {
		out[k] = p.ID
	}
	return out
}

// TestReferenceWeeklyFullLives37Days: the reference product's example. A
// weekly full kept 30 days, with logs kept 30 days, lives until the last
// log that needs it expires: that log is the last before the next week's
// full, taken 7 days later, so the full lives 37 days (less the 10 minutes
// the full took, since a point's time is when it finished).
func TestReferenceWeeklyFullLives37Days(t *testing.T) {
	p := Policy{Name: "ref", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 1},
		Log: &LogSchedule{Every: Duration(15 * time.Minute)}, Retention: Retention{Full: Days(30), Log: Days(30)}}
	s := &sim{p: p}
	s.run(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), nil)
	full := s.all[0]
	if full.Kind != Full {
		t.Fatalf("got first point %+v, want the full", full)
	}
	// the last expiry of any point whose chain leads to the full
	deps := Dependencies(s.all)
	var last time.Time
	for _, pt := range s.all {
		for id := pt.ID; ; {
			if id == full.ID {
				if pt.Expires.After(last) {
					last = pt.Expires
				}
				break
			}
			d := deps[id]
			if len(d) == 0 {
				break
			}
			id = d[0]
		}
	}
	if got, want := last.Sub(full.Taken), 37*24*time.Hour-10*time.Minute; got != want {
		t.Errorf("got a life of %v, want %v", got, want)
	}
	for _, tt := range []struct {
		now  time.Time
		kept bool
	}{
		{full.Expires.Add(time.Hour), true}, // past its own 30 days
		{last.Add(-time.Nanosecond), true},
		{last, false},
	} {
		keep, _ := Retain(s.all, tt.now)
		if got := slices.Contains(keep, full.ID); got != tt.kept {
			t.Errorf("at day %.2f: got kept %v, want %v", tt.now.Sub(full.Taken).Hours()/24, got, tt.kept)
		}
	}
}
