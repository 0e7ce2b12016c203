package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SQL Server's datetime values carry no zone: msdb's dates, HEADERONLY's
// dates, SYSDATETIME and STOPAT are the server's wall clock. go-mssqldb
// labels what it reads with the DSN's `timezone` option (UTC by default)
// and converting such a value with .UTC() would shift it by that zone,
// before coffer shifts it by the server's offset: twice. This package
// therefore reads and writes the wall-clock fields only, as a time.Time in
// UTC, and callers convert with the offset the server had then.

// wallClock returns t's wall-clock fields in its own location as a UTC
// time, so that a DSN time zone cannot shift it.
func wallClock(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// ErrNoTimeZone is returned by BackupTimeZone when msdb does not know the
// offset of a backup (history purged, or time_zone 127).
var ErrNoTimeZone = errors.New("msdb does not record the backup's time zone")

// BackupTimeZone returns the server's local time less UTC when it took
// the backup of database that holds the log from firstLSN to lastLSN,
// as msdb.dbo.backupset.time_zone records it (15-minute units; 127 is
// unknown). Each backup keeps its own offset, so times of backups taken
// before a daylight-saving change convert with the offset they had.
func (c *Client) BackupTimeZone(ctx context.Context, database, firstLSN, lastLSN string) (time.Duration, error) {
	var tz sql.NullInt64
	err := c.db.QueryRowContext(ctx, `SELECT TOP 1 time_zone FROM msdb.dbo.backupset
		WHERE database_name = @p1 AND first_lsn = CAST(@p2 AS numeric(25,0)) AND last_lsn = CAST(@p3 AS numeric(25,0))
		ORDER BY backup_set_id DESC`, database, firstLSN, lastLSN).Scan(&tz)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, ErrNoTimeZone
	case err != nil:
		return 0, fmt.Errorf("read the time zone of the backup of %q: %w", database, wrapSQL(err))
	case !tz.Valid || tz.Int64 == 127 || tz.Int64 < -64 || tz.Int64 > 64:
		return 0, ErrNoTimeZone
	}
	return time.Duration(tz.Int64) * 15 * time.Minute, nil
}
