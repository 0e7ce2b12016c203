package mssqlsim

import "time"

// SQL Server has no time zone in datetime values: SYSDATETIME, msdb's
// dates, HEADERONLY's dates, log records' commit times and STOPAT are all
// the server's wall clock. The simulator keeps UTC inside (so a fake clock
// and the content oracle need no zone) and converts here, at the edges. A
// wall-clock value is carried as a time.Time in UTC whose fields are the
// local reading; the TDS writer sends those fields as they are.

// wallClock returns t's fields in its own location as a UTC time.
func wallClock(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// local is the server's wall clock at the moment t.
func (i *Instance) local(t time.Time) time.Time { return wallIn(i.cfg.Location, t) }

// wallIn is the wall clock of loc at the moment t.
func wallIn(loc *time.Location, t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return wallClock(t.In(loc))
}

// clockOf is the time zone of the server that wrote backup set h, in
// which its log records' times are: the set's own (TimeZone), or this
// instance's for a set an older simulator wrote.
func (i *Instance) clockOf(h setHeader) *time.Location {
	if h.TimeZone != "" {
		if loc, err := time.LoadLocation(h.TimeZone); err == nil {
			return loc
		}
	}
	return i.cfg.Location
}

// utcOffset is the server's local time less UTC at the moment t, in
// seconds.
func (i *Instance) utcOffset(t time.Time) int {
	_, off := t.In(i.cfg.Location).Zone()
	return off
}

// atOffset is the wall clock of the moment t at a fixed offset (seconds),
// as a backup records it.
func atOffset(t time.Time, offset int) time.Time {
	if t.IsZero() {
		return t
	}
	return wallClock(t.Add(time.Duration(offset) * time.Second).UTC())
}

// timeZoneCode is msdb.dbo.backupset.time_zone for an offset in seconds:
// 15-minute intervals, 127 when unknown.
func timeZoneCode(offset int) int64 {
	if offset%900 != 0 {
		return 127
	}
	return int64(offset / 900)
}

// datetimeValue rounds a wall-clock time as SQL Server's datetime stores
// it: to 1/300 of a second (values end in .000, .003 or .007).
func datetimeValue(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	ns := t.Sub(day).Nanoseconds()
	ticks := (ns*300 + 5e8) / 1e9
	return day.Add(time.Duration(ticks * 1e9 / 300))
}

// stopMoment is the UTC moment a restore stopped at a wall-clock STOPAT,
// between the last commit it applied (after) and the first it did not
// (before): the earliest moment from after on whose local time is stop,
// or, where the clock never showed stop there, the moment just before
// the next commit.
func stopMoment(loc *time.Location, stop, after, before time.Time) time.Time {
	var best time.Time
	for _, d := range []time.Duration{-26 * time.Hour, 0, 26 * time.Hour} {
		_, off := stop.Add(d).In(loc).Zone()
		u := stop.Add(-time.Duration(off) * time.Second)
		if !wallIn(loc, u).Equal(stop) || u.Before(after) || !u.Before(before) {
			continue
		}
		if best.IsZero() || u.Before(best) {
			best = u
		}
	}
	if best.IsZero() {
		best = before.Add(-time.Nanosecond)
		if best.Before(after) {
			best = after
		}
	}
	return best
}
