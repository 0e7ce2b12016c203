package policy

import (
	"fmt"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// ServerTime is a UTC moment as the server's wall clock, for STOPAT on
// the log last: the moment plus the offset the server had while it wrote
// that log. prev is the backup restored before the log (nil when none).
//
// Each backup records the offset it was taken with. When the log's
// offset is the one of the backup before it, the server's clock ran at
// that offset over the whole log, so its local times rise with its
// records and STOPAT stops exactly at the moment. When they differ, a
// daylight-saving change lies inside the log: coffer does not know when,
// so it cannot tell the offset at the moment, and after a fall-back the
// repeated hour shows each local time twice while SQL Server stops at the
// first commit later than STOPAT. Then it refuses rather than restore a
// point an hour off.
func ServerTime(t time.Time, prev, last *cofferv1.BackupMetadata) (time.Time, error) {
	offset := time.Duration(last.GetUtcOffsetMinutes()) * time.Minute
	if prev != nil && prev.GetUtcOffsetMinutes() != last.GetUtcOffsetMinutes() {
		before := prev.GetBackupFinish().AsTime().UTC().Format(time.RFC3339)
		after := last.GetBackupStart().AsTime().UTC().Format(time.RFC3339)
		return time.Time{}, fmt.Errorf("the server's UTC offset changed from %s to %s (daylight saving) between the backups of %s and %s; "+
			"SQL Server reads STOPAT in its local time, which inside the log backup of %s does not name one moment exactly: "+
			"choose a moment up to %s or from %s on",
			offsetString(prev.GetUtcOffsetMinutes()), offsetString(last.GetUtcOffsetMinutes()), before, after, after, before, after)
	}
	return t.UTC().Add(offset), nil
}

func offsetString(minutes int32) string {
	sign := "+"
	if minutes < 0 {
		sign, minutes = "-", -minutes
	}
	return fmt.Sprintf("UTC%s%02d:%02d", sign, minutes/60, minutes%60)
}
