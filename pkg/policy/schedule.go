package policy

import (
	"hash/fnv"
	"time"
)

// dayTimes returns the local times, on the day of t and the next eight,
// at hour:minute on the allowed weekdays (all when days is empty).
func dayTimes(t time.Time, loc *time.Location, days []time.Weekday, hour, minute int, fn func(time.Time) bool) {
	lt := t.In(loc)
	for k := -1; k <= 8; k++ {
		d := time.Date(lt.Year(), lt.Month(), lt.Day()+k, hour, minute, 0, 0, loc)
		if len(days) > 0 && !containsDay(days, d.Weekday()) {
			continue
		}
		if !fn(d) {
			return
		}
	}
}

// next returns the first scheduled time strictly after t.
func next(t time.Time, loc *time.Location, days []time.Weekday, hour, minute int) time.Time {
	var out time.Time
	dayTimes(t, loc, days, hour, minute, func(d time.Time) bool {
		if d.After(t) {
			out = d
			return false
		}
		return true
	})
	return out
}

// last returns the last scheduled time at or before t, or zero when there
// is none in the past eight days.
func last(t time.Time, loc *time.Location, days []time.Weekday, hour, minute int) time.Time {
	var out time.Time
	lt := t.In(loc)
	for k := 0; k <= 8; k++ {
		d := time.Date(lt.Year(), lt.Month(), lt.Day()-k, hour, minute, 0, 0, loc)
		if len(days) > 0 && !containsDay(days, d.Weekday()) {
			continue
		}
		if !d.After(t) {
			return d
		}
	}
	return out
}

func (p *Policy) loc() *time.Location {
	l, err := p.Location()
	if err != nil {
		return time.UTC // Validate reports the zone
	}
	return l
}

// NextFull is the first time after t a full backup is due.
func (p *Policy) NextFull(t time.Time) time.Time {
	return next(t, p.loc(), p.fullDays(), p.Full.Hour, p.Full.Minute)
}

// LastFull is the last time at or before t a full backup was due.
func (p *Policy) LastFull(t time.Time) time.Time {
	return last(t, p.loc(), p.fullDays(), p.Full.Hour, p.Full.Minute)
}

func (p *Policy) fullDays() []time.Weekday {
	if p.Full.Frequency == Weekly {
		return p.Full.Days
	}
	return nil
}

// NextDifferential is the first time after t a differential is due, or
// zero when the policy takes none.
func (p *Policy) NextDifferential(t time.Time) time.Time {
	if p.Differential == nil {
		return time.Time{}
	}
	return next(t, p.loc(), p.Differential.Days, p.Differential.Hour, p.Differential.Minute)
}

// LastDifferential is the last time at or before t a differential was due,
// or zero.
func (p *Policy) LastDifferential(t time.Time) time.Time {
	if p.Differential == nil {
		return time.Time{}
	}
	return last(t, p.loc(), p.Differential.Days, p.Differential.Hour, p.Differential.Minute)
}

// NextVerify is the first time after t a test restore is due, or zero
// when the policy asks for none.
func (p *Policy) NextVerify(t time.Time) time.Time {
	if p.Verify == nil {
		return time.Time{}
	}
	return next(t, p.loc(), p.Verify.Days, p.Verify.Hour, p.Verify.Minute)
}

// NextLog is the first time after t a log backup is due, or zero when the
// policy takes none. Log slots are aligned to whole multiples of the
// interval since the Unix epoch, so a 15-minute policy runs at :00, :15,
// :30 and :45.
func (p *Policy) NextLog(t time.Time) time.Time {
	if p.Log == nil || p.Log.Every <= 0 {
		return time.Time{}
	}
	every := p.Log.Every.D()
	return t.Truncate(every).Add(every)
}

// NextLogOf is NextLog for the database called name on instance: with
// Log.Spread, its slots are shifted by its own offset within the
// interval, a whole number of seconds (logOffset); otherwise they are
// NextLog's.
func (p *Policy) NextLogOf(t time.Time, instance, name string) time.Time {
	if p.Log == nil || p.Log.Every <= 0 {
		return time.Time{}
	}
	off := p.logOffset(instance, name)
	return p.NextLog(t.Add(-off)).Add(off)
}

// logOffset is how far the log slots of the database called name on
// instance are shifted from the aligned ones: 0 without Log.Spread, else
// a hash of both names modulo the interval, in whole seconds.
func (p *Policy) logOffset(instance, name string) time.Duration {
	every := p.Log.Every.D()
	if !p.Log.Spread || every < 2*time.Second {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(instance))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return time.Duration(h.Sum64()%uint64(every/time.Second)) * time.Second
}

// LastLog is the last log slot at or before t, or zero.
func (p *Policy) LastLog(t time.Time) time.Time {
	if p.Log == nil || p.Log.Every <= 0 {
		return time.Time{}
	}
	return t.Truncate(p.Log.Every.D())
}
