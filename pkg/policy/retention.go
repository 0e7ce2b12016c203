package policy

import (
	"slices"
	"time"
)

// Tags Expiry gives a scheduled full: the grandfather-father-son ranges
// that apply to it. Every scheduled full is "daily"; the others mark the
// full that represents its week, month or year.
const (
	TagDaily   = "daily"
	TagWeekly  = "weekly"
	TagMonthly = "monthly"
	TagYearly  = "yearly"
)

// DefaultOnDemandRetention is how long an on-demand backup is kept when
// neither the policy's on-demand rules nor its retention say: the
// reference product's 45 days.
const DefaultOnDemandRetention = 45 * 24 * time.Hour

// Expiry returns when a new recovery point expires under p, and the
// grandfather-father-son tags that gave the expiry. earlier holds the
// database's points taken before pt; the catalog's unexpired points are
// enough, since a point that decides a range (the first full of a day,
// month or year) outlives the range's period.
//
// A scheduled full is kept Retention.Full ("daily"); the first full taken
// on Weekly.Day (that day in the policy's zone) also Count weeks
// ("weekly"); the first of its month, counting only fulls on Monthly.Day
// when it is set, also Count calendar months ("monthly"); and that full,
// when its month is Yearly.Month, also Count years ("yearly"). It expires
// at the latest of these. Weeks, months and years are calendar units in
// the policy's zone (AddDate, which carries a day past a short month's
// end into the next: never shorter); the other retentions are plain
// durations. Only scheduled fulls count: copy-only and on-demand fulls
// are never tagged and never take a range from a scheduled one. A range
// whose day was missed is not moved to another day.
//
// A differential is kept Retention.Differential, a log Retention.Log, a
// scheduled copy-only full Retention.Full. On-demand backups: a full or
// copy-only full OnDemand.Full (default 45 days); a log OnDemand.Log,
// else Retention.Log, else 45 days; a differential Retention.Differential,
// else 45 days. Nothing is kept less than MinRetention, even under a
// policy that Validate would refuse.
//
// Expiry is a point's own retention; Retain keeps it longer while a kept
// point depends on it.
func (p *Policy) Expiry(pt Point, earlier []Point) (time.Time, []string) {
	r := p.Retention
	keep := func(d ...Duration) time.Time {
		for _, x := range d {
			if x > 0 {
				return pt.Taken.Add(max(x.D(), MinRetention))
			}
		}
		return pt.Taken.Add(max(DefaultOnDemandRetention, MinRetention))
	}
	if pt.OnDemand {
		switch pt.Kind {
		case Full, CopyOnlyFull:
			return keep(p.OnDemand.Full), nil
		case Differential:
			return keep(r.Differential), nil
		case Log:
			return keep(p.OnDemand.Log, r.Log), nil
		}
	}
	switch pt.Kind {
	case Full:
		return p.fullExpiry(pt, earlier)
	case CopyOnlyFull:
		return keep(r.Full, Duration(MinRetention)), nil
	case Differential:
		return keep(r.Differential, Duration(MinRetention)), nil
	case Log:
		return keep(r.Log, Duration(MinRetention)), nil
	}
	// an unknown kind: keep it as long as the policy keeps anything
	return keep(Duration(r.longestFull())), nil
}

// fullExpiry is Expiry for a scheduled full.
func (p *Policy) fullExpiry(pt Point, earlier []Point) (time.Time, []string) {
	r := p.Retention
	loc := p.loc()
	local := pt.Taken.In(loc)
	expires := pt.Taken.Add(max(r.Full.D(), MinRetention))
	tags := []string{TagDaily}
	extend := func(tag string, until time.Time) {
		tags = append(tags, tag)
		if until.After(expires) {
			expires = until
		}
	}

	var prior []time.Time // earlier scheduled fulls, in the policy's zone
	for _, e := range earlier {
		if e.Kind == Full && !e.OnDemand && e.Taken.Before(pt.Taken) {
			prior = append(prior, e.Taken.In(loc))
		}
	}
	sameDay := func(a, b time.Time) bool {
		return a.Year() == b.Year() && a.YearDay() == b.YearDay()
	}
	monthlyDay := func(t time.Time) bool {
		return r.Monthly == nil || r.Monthly.Day == nil || t.Weekday() == *r.Monthly.Day
	}

	if w := r.Weekly; w != nil && w.Count > 0 && local.Weekday() == w.Day &&
		!slices.ContainsFunc(prior, func(t time.Time) bool { return sameDay(t, local) }) {
		extend(TagWeekly, local.AddDate(0, 0, 7*w.Count))
	}
	firstOfMonth := monthlyDay(local) && !slices.ContainsFunc(prior, func(t time.Time) bool {
		return t.Year() == local.Year() && t.Month() == local.Month() && monthlyDay(t)
	})
	if m := r.Monthly; m != nil && m.Count > 0 && firstOfMonth {
		extend(TagMonthly, local.AddDate(0, m.Count, 0))
	}
	if y := r.Yearly; y != nil && y.Count > 0 && local.Month() == y.Month && firstOfMonth {
		extend(TagYearly, local.AddDate(y.Count, 0, 0))
	}
	return expires.In(pt.Taken.Location()), tags
}

// Retain decides which of a database's points to keep at now: a point is
// kept while now is before its Expires (a zero Expires is never reached),
// and while any kept point depends on it, transitively (Dependencies): a
// full lives until the last log or differential that needs it expires,
// and a differential until the last log that needs it. Everything else
// expires.
//
// Both lists are deterministic whatever the order of points. keep is in
// apply order (by Taken, every point after what it depends on). expire is
// in the reverse: every point before anything it depends on, so deleting
// in that order, one at a time, never leaves a point without its chain.
func Retain(points []Point, now time.Time) (keep, expire []string) {
	g := newChainGraph(points)
	kept := make([]bool, len(g.pts))
	for i, pt := range g.pts {
		if !pt.Expires.IsZero() && !now.Before(pt.Expires) {
			continue
		}
		for j := i; j >= 0 && !kept[j]; j = g.dep[j] {
			kept[j] = true
		}
	}
	for _, i := range g.order() {
		if kept[i] {
			keep = append(keep, g.pts[i].ID)
		} else {
			expire = append(expire, g.pts[i].ID)
		}
	}
	slices.Reverse(expire)
	return keep, expire
}
