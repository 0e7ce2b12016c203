// Package policy is a backup policy: when full, differential and log
// backups are due, how long each is kept (with grandfather-father-son
// ranges for fulls), and how the vault compresses them. It validates a
// policy against the rules that protect a database administrator (see
// ../../../shared/REFERENCE.md), computes due times in the policy's time
// zone, and computes each recovery point's expiry.
//
// The package is pure: no I/O, and time is always passed in.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Frequency of full backups.
type Frequency string

// Frequencies.
const (
	Daily  Frequency = "daily"
	Weekly Frequency = "weekly"
)

// MinRetention is the shortest any backup may be kept.
const MinRetention = 7 * 24 * time.Hour

// MinLogInterval is the shortest log backup interval: one minute, past the
// reference product's fifteen.
const MinLogInterval = time.Minute

// DefaultName is the name of the default policy.
const DefaultName = "default"

// Policy is a backup policy.
type Policy struct {
	Name string `json:"name"`
	// TimeZone is an IANA zone name ("Europe/Berlin"); empty means UTC.
	TimeZone     string        `json:"time_zone,omitempty"`
	Full         Schedule      `json:"full"`
	Differential *Schedule     `json:"differential,omitempty"`
	Log          *LogSchedule  `json:"log,omitempty"`
	Retention    Retention     `json:"retention"`
	Compression  Compression   `json:"compression,omitempty"`
	OnDemand     OnDemandRules `json:"on_demand"`
	// Verify, when set, runs regular test restores.
	Verify *VerifySchedule `json:"verify,omitempty"`
	// Copy, when set, copies each recovery point to a second vault.
	Copy *CopyRule `json:"copy,omitempty"`
}

// CopyRule copies every recovery point of the policy's databases to a
// second vault After it is taken, where it is kept for Retention from
// when it was taken (whatever the first vault keeps). A point already in
// Vault is not copied.
type CopyRule struct {
	// Vault names the vault (coffer vault list; "default" is the default).
	Vault     string   `json:"vault"`
	After     Duration `json:"after,omitempty"`
	Retention Duration `json:"retention"`
}

// Compression is how the vault compresses a policy's backups, chunk by
// chunk after deduplication (empty means Zstd); SQL Server's own compression stays off, as it
// would defeat deduplication. Whichever it is, the vault stores a chunk
// that does not shrink as it is, and samples a stream whose chunks stop
// shrinking (TDE, a backup SQL Server compressed) rather than try every
// chunk.
type Compression string

// Compressions.
const (
	// Zstd: the better ratio. The default.
	Zstd Compression = "zstd"
	// S2: a lower ratio for a fraction of zstd's CPU time, backing up and
	// restoring. A vault holding S2 chunks needs a coffer that knows S2.
	S2 Compression = "s2"
	// Uncompressed: chunks stored as they are, for data known not to
	// compress.
	Uncompressed Compression = "none"
)

// OrDefault returns c, or Zstd when c is empty.
func (c Compression) OrDefault() Compression {
	if c == "" {
		return Zstd
	}
	return c
}

// UnmarshalJSON reads a compression's name, or true (zstd) or false
// (none), as policies stored "compression" before it named one.
func (c *Compression) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		*c = Uncompressed
		if on {
			*c = Zstd
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("compression: want \"zstd\", \"s2\" or \"none\", not %s", b)
	}
	*c = Compression(s)
	return nil
}

// VerifySchedule asks for regular test restores: on Days (every day when
// empty) at Hour:Minute in the policy's zone, the latest moment and a
// random moment of the restorable range are restored to scratch databases
// on Instance (default: the database's own instance), checked with DBCC
// CHECKDB and dropped; the result is recorded on the recovery points.
type VerifySchedule struct {
	Days     []time.Weekday `json:"days,omitempty"`
	Hour     int            `json:"hour"`
	Minute   int            `json:"minute"`
	Instance string         `json:"instance,omitempty"`
}

// Schedule says when a full or differential backup is due: on the given
// days (every day for a daily full) at Hour:Minute in the policy's zone.
type Schedule struct {
	// Frequency applies to fulls only: daily or weekly.
	Frequency Frequency      `json:"frequency,omitempty"`
	Days      []time.Weekday `json:"days,omitempty"`
	Hour      int            `json:"hour"`
	Minute    int            `json:"minute"`
}

// LogSchedule says how often log backups run.
type LogSchedule struct {
	Every Duration `json:"every"`
	// Spread offsets each database's log slots by a fixed part of Every,
	// derived from the database's instance and name, so that a fleet's
	// logs do not all start at the same moment. Without it every
	// database's logs run at the same whole multiples of Every.
	Spread bool `json:"spread,omitempty"`
}

// Retention says how long backups are kept.
type Retention struct {
	// Full is how long every full is kept (the daily range). Required.
	Full Duration `json:"full"`
	// Weekly keeps the full taken on Weekly.Day for Weekly.Count weeks.
	Weekly *WeeklyRange `json:"weekly,omitempty"`
	// Monthly keeps the first full of each month (taken on Monthly.Day of
	// the week, or the first full of the month when Day is nil) for
	// Monthly.Count months.
	Monthly *MonthlyRange `json:"monthly,omitempty"`
	// Yearly keeps the first full of Yearly.Month for Yearly.Count years.
	Yearly *YearlyRange `json:"yearly,omitempty"`
	// Differential is how long differentials are kept.
	Differential Duration `json:"differential,omitempty"`
	// Log is how long log backups are kept.
	Log Duration `json:"log,omitempty"`
}

// WeeklyRange keeps one full a week.
type WeeklyRange struct {
	Day   time.Weekday `json:"day"`
	Count int          `json:"count"`
}

// MonthlyRange keeps one full a month.
type MonthlyRange struct {
	Day   *time.Weekday `json:"day,omitempty"`
	Count int           `json:"count"`
}

// YearlyRange keeps one full a year.
type YearlyRange struct {
	Month time.Month `json:"month"`
	Count int        `json:"count"`
}

// OnDemandRules are the retentions of on-demand backups, which carry their
// own.
type OnDemandRules struct {
	Full Duration `json:"full,omitempty"` // default 45 days
	Log  Duration `json:"log,omitempty"`  // default: the policy's log retention
}

// Duration is a time.Duration that reads and writes as "30d", "12h",
// "15m" in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Days makes a Duration of n days.
func Days(n int) Duration { return Duration(time.Duration(n) * 24 * time.Hour) }

// String writes whole days as "Nd", else Go's form.
func (d Duration) String() string {
	t := time.Duration(d)
	if t > 0 && t%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", t/(24*time.Hour))
	}
	return t.String()
}

// ParseDuration reads "30d", "2w", or anything time.ParseDuration reads.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	mult := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		mult = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		mult = 7 * 24 * time.Hour
	}
	if mult != 0 {
		var n int
		num := s[:len(s)-1] // one unit: "3dw" is no duration
		if _, err := fmt.Sscanf(num, "%d", &n); err != nil || fmt.Sprint(n) != num {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		// n*mult would wrap around to another, even negative, duration
		if limit := int(math.MaxInt64 / mult); n > limit || n < -limit {
			return 0, fmt.Errorf("invalid duration %q: longer than %d days", s, limit*int(mult/(24*time.Hour)))
		}
		return Duration(time.Duration(n) * mult), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return Duration(d), nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Default is the default policy: a daily full at 22:00 UTC, a log backup
// every 15 minutes, everything kept 30 days, compressed with zstd.
func Default() Policy {
	return Policy{
		Name:        DefaultName,
		Full:        Schedule{Frequency: Daily, Hour: 22},
		Log:         &LogSchedule{Every: Duration(15 * time.Minute)},
		Retention:   Retention{Full: Days(30), Log: Days(30)},
		Compression: Zstd,
	}
}

// Location returns the policy's time zone.
func (p *Policy) Location() (*time.Location, error) {
	if p.TimeZone == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(p.TimeZone)
}

// Validate reports every problem with the policy at once, each naming the
// field and the rule.
func (p *Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(p.Name) == "" || strings.ContainsAny(p.Name, "/\\") || len(p.Name) > 64 {
		bad("name: give a name of 1 to 64 characters without '/'")
	}
	if _, err := p.Location(); err != nil {
		bad("time_zone: unknown time zone %q", p.TimeZone)
	}
	switch p.Compression {
	case "", Zstd, S2, Uncompressed:
	default:
		bad("compression: %q is none of zstd, s2 and none", p.Compression)
	}
	checkTime := func(field string, s Schedule) {
		if s.Hour < 0 || s.Hour > 23 {
			bad("%s.hour: %d is not an hour (0 to 23)", field, s.Hour)
		}
		if s.Minute < 0 || s.Minute > 59 {
			bad("%s.minute: %d is not a minute (0 to 59)", field, s.Minute)
		}
		for _, d := range s.Days {
			if d < time.Sunday || d > time.Saturday {
				bad("%s.days: %d is not a weekday", field, d)
			}
		}
		if hasDuplicates(s.Days) {
			bad("%s.days: a day is listed twice", field)
		}
	}
	switch p.Full.Frequency {
	case Daily:
		if len(p.Full.Days) > 0 {
			bad("full.days: a daily full runs every day; list days only for a weekly full")
		}
	case Weekly:
		if len(p.Full.Days) == 0 {
			bad("full.days: a weekly full needs at least one day")
		}
	default:
		bad("full.frequency: %q is neither daily nor weekly", p.Full.Frequency)
	}
	checkTime("full", p.Full)
	if v := p.Verify; v != nil {
		checkTime("verify", Schedule{Days: v.Days, Hour: v.Hour, Minute: v.Minute})
	}
	if d := p.Differential; d != nil {
		checkTime("differential", *d)
		if d.Frequency != "" {
			bad("differential.frequency: differentials run on the days listed; leave frequency empty")
		}
		if len(d.Days) == 0 {
			bad("differential.days: list the days differentials run (at most one a day)")
		}
		if p.Full.Frequency == Daily {
			// a differential with daily fulls is allowed (past the reference
			// product's limit), but never on a full's day: with daily fulls
			// that is every day unless the full runs at another hour
			if d.Hour == p.Full.Hour && d.Minute == p.Full.Minute {
				bad("differential: it would run at the same time as the daily full")
			}
		} else {
			for _, day := range d.Days {
				for _, f := range p.Full.Days {
					if day == f {
						bad("differential.days: %s is a full's day; a differential never runs on a full's day", day)
					}
				}
			}
		}
		if p.Retention.Differential.D() == 0 {
			bad("retention.differential: say how long differentials are kept")
		}
	}
	if l := p.Log; l != nil {
		if l.Every.D() < MinLogInterval {
			bad("log.every: %s is shorter than the minimum of 1 minute", l.Every)
		}
		if l.Every.D() > 24*time.Hour {
			bad("log.every: %s is longer than a day", l.Every)
		}
		if p.Retention.Log.D() == 0 {
			bad("retention.log: say how long log backups are kept")
		}
	}
	r := p.Retention
	minimum := func(field string, d Duration) {
		if d != 0 && d.D() < MinRetention {
			bad("%s: %s is shorter than the minimum retention of 7 days", field, d)
		}
	}
	if r.Full == 0 {
		bad("retention.full: say how long fulls are kept")
	}
	minimum("retention.full", r.Full)
	minimum("retention.differential", r.Differential)
	minimum("retention.log", r.Log)
	minimum("on_demand.full", p.OnDemand.Full)
	minimum("on_demand.log", p.OnDemand.Log)
	if r.Differential != 0 && r.Differential.D() > r.longestFull() {
		bad("retention.differential: %s is longer than any full it depends on is kept (%s)", r.Differential, Duration(r.longestFull()))
	}
	if r.Differential != 0 && p.Differential == nil {
		bad("retention.differential: the policy takes no differentials")
	}
	if r.Log != 0 && p.Log == nil {
		bad("retention.log: the policy takes no log backups")
	}
	if w := r.Weekly; w != nil {
		if w.Count < 1 || w.Count > maxWeeks {
			bad("retention.weekly.count: keep 1 to %d weekly fulls (100 years)", maxWeeks)
		}
		if p.Full.Frequency == Weekly && !containsDay(p.Full.Days, w.Day) {
			bad("retention.weekly.day: no full runs on %s", w.Day)
		}
	}
	if m := r.Monthly; m != nil {
		if m.Count < 1 || m.Count > maxMonths {
			bad("retention.monthly.count: keep 1 to %d monthly fulls (100 years)", maxMonths)
		}
		if m.Day != nil && p.Full.Frequency == Weekly && !containsDay(p.Full.Days, *m.Day) {
			bad("retention.monthly.day: no full runs on %s", *m.Day)
		}
	}
	if y := r.Yearly; y != nil {
		if y.Count < 1 || y.Count > maxYears {
			bad("retention.yearly.count: keep 1 to %d yearly fulls", maxYears)
		}
		if y.Month < time.January || y.Month > time.December {
			bad("retention.yearly.month: %d is not a month", y.Month)
		}
	}
	if c := p.Copy; c != nil {
		if c.Vault == "" {
			bad("copy.vault: name the vault the copies go to")
		}
		if c.After < 0 {
			bad("copy.after: %v is negative", c.After)
		}
		if c.Retention <= 0 {
			bad("copy.retention: give how long the copies are kept, e.g. \"90d\"")
		}
	}
	return errors.Join(errs...)
}

// The most weekly, monthly and yearly fulls a policy keeps: a hundred
// years, well inside what a time.Duration holds (292 years), so that
// neither Validate's comparisons nor Expiry's dates overflow.
const (
	maxYears  = 100
	maxMonths = 12 * maxYears
	maxWeeks  = 52 * maxYears
)

// longestFull is the longest any full may be kept under r.
func (r Retention) longestFull() time.Duration {
	d := r.Full.D()
	if r.Weekly != nil {
		d = max(d, time.Duration(r.Weekly.Count)*7*24*time.Hour)
	}
	if r.Monthly != nil {
		d = max(d, time.Duration(r.Monthly.Count)*31*24*time.Hour)
	}
	if r.Yearly != nil {
		d = max(d, time.Duration(r.Yearly.Count)*366*24*time.Hour)
	}
	return d
}

func containsDay(days []time.Weekday, d time.Weekday) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}

func hasDuplicates(days []time.Weekday) bool {
	s := append([]time.Weekday(nil), days...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	for k := 1; k < len(s); k++ {
		if s[k] == s[k-1] {
			return true
		}
	}
	return false
}
