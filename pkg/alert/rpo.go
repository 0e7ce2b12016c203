package alert

import (
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/policy"
)

// RPOFactor is how many of its policy's intervals a database may go
// without a committed backup before its rpo alert opens.
const RPOFactor = 2

// Protection is what the rpo rule reads of one protected database: its
// policy, whether its log backups are paused (SIMPLE recovery), when its
// last committed backup ended (ScheduleState.last_backup_at; zero when it
// has none yet) and when it was protected.
type Protection struct {
	Instance    string
	Database    string
	Policy      *policy.Policy
	LogPaused   bool
	LastBackup  time.Time
	ProtectedAt time.Time
}

// Interval is the longest a database protected by p should go between
// two backups from t on: the log interval while log backups run, else the
// longest gap between two of its full and differential slots over the
// coming week.
func Interval(p *policy.Policy, logPaused bool, t time.Time) time.Duration {
	if p.Log != nil && p.Log.Every > 0 && !logPaused {
		return p.Log.Every.D()
	}
	slot := func(t time.Time) time.Time {
		n := p.NextFull(t)
		if d := p.NextDifferential(t); !d.IsZero() && d.Before(n) {
			n = d
		}
		return n
	}
	var longest time.Duration
	prev := slot(t)
	for range 15 { // two weeks of daily slots cover every weekly pattern
		n := slot(prev)
		if n.IsZero() || prev.IsZero() {
			break
		}
		longest = max(longest, n.Sub(prev))
		prev = n
	}
	if longest == 0 {
		longest = 7 * 24 * time.Hour
	}
	return longest
}

// EvaluateRPO says, for each database, whether its rpo alert holds at
// now: no backup ended within RPOFactor intervals (counted from its
// protection when it has none yet). A database whose lag is within bounds
// gets a resolving change, which leaves an alert that is not open alone.
func EvaluateRPO(now time.Time, dbs []Protection, by string) []Change {
	out := make([]Change, 0, len(dbs))
	for _, d := range dbs {
		since := d.LastBackup
		if since.IsZero() {
			since = d.ProtectedAt
		}
		limit := RPOFactor * Interval(d.Policy, d.LogPaused, now)
		c := Change{Rule: RPO, Instance: d.Instance, Database: d.Database, At: now, By: by}
		if lag := now.Sub(since); !since.IsZero() && lag > limit {
			c.Open = true
			c.Summary = fmt.Sprintf("%s is out of its RPO", subject(d.Instance, d.Database))
			last := "no backup since its protection at " + since.UTC().Format(time.RFC3339)
			if !d.LastBackup.IsZero() {
				last = "last backup ended " + since.UTC().Format(time.RFC3339)
			}
			c.Detail = fmt.Sprintf("%s, %s ago; policy %q wants one within %s", last,
				lag.Round(time.Second), d.Policy.Name, limit)
		}
		out = append(out, c)
	}
	return out
}
