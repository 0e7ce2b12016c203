package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/mssql"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// backupMetadata is what RESTORE HEADERONLY and FILELISTONLY say of a
// backup, as the manifest records it.
func backupMetadata(h mssql.Header, files []mssql.File) *cofferv1.BackupMetadata {
	m := &cofferv1.BackupMetadata{
		Type:                  headerType(h),
		CopyOnly:              h.IsCopyOnly,
		FirstLsn:              h.FirstLSN,
		LastLsn:               h.LastLSN,
		CheckpointLsn:         h.CheckpointLSN,
		DatabaseBackupLsn:     h.DatabaseBackupLSN,
		DifferentialBaseLsn:   h.DifferentialBaseLSN,
		DifferentialBaseGuid:  strings.ToLower(h.DifferentialBaseGUID),
		BackupSetGuid:         strings.ToLower(h.BackupSetGUID),
		BackupStart:           timestamp(h.BackupStart),
		BackupFinish:          timestamp(h.BackupFinish),
		ServerName:            h.ServerName,
		DatabaseName:          h.DatabaseName,
		DatabaseGuid:          strings.ToLower(h.BindingID),
		FamilyGuid:            strings.ToLower(h.FamilyGUID),
		FirstRecoveryForkGuid: strings.ToLower(h.FirstRecoveryForkID),
		LastRecoveryForkGuid:  strings.ToLower(h.RecoveryForkID),
		ForkPointLsn:          h.ForkPointLSN,
		HasBulkLoggedData:     h.HasBulkLoggedData,
		BeginsLogChain:        h.BeginsLogChain,
		RecoveryModel:         h.RecoveryModel,
		Collation:             h.Collation,
		HasChecksums:          h.HasChecksums,
	}
	for _, f := range files {
		m.Files = append(m.Files, &cofferv1.FileInfo{
			FileId:       f.ID,
			LogicalName:  f.Logical,
			PhysicalName: f.Physical,
			Type:         f.Type,
			SizeBytes:    f.Size,
		})
	}
	return m
}

// headerType maps HEADERONLY's BackupType (1 full, 5 differential, 2 log)
// and IsCopyOnly to the contract's type. A copy-only log stays a log; its
// CopyOnly flag says the rest.
func headerType(h mssql.Header) cofferv1.BackupType {
	switch h.BackupType {
	case 1:
		if h.IsCopyOnly {
			return cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL
		}
		return cofferv1.BackupType_BACKUP_TYPE_FULL
	case 5:
		return cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL
	case 2:
		return cofferv1.BackupType_BACKUP_TYPE_LOG
	}
	return cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// toUTC converts the times SQL Server reported in its local time (backup
// start and finish, marks) to UTC, and records the offset.
func toUTC(m *cofferv1.BackupMetadata, offset time.Duration) {
	m.UtcOffsetMinutes = int32(offset / time.Minute)
	shift := func(ts *timestamppb.Timestamp) *timestamppb.Timestamp {
		if ts == nil {
			return nil
		}
		return timestamppb.New(ts.AsTime().Add(-offset))
	}
	m.BackupStart, m.BackupFinish = shift(m.GetBackupStart()), shift(m.GetBackupFinish())
	for _, mk := range m.GetMarks() {
		mk.Time = shift(mk.GetTime())
	}
}

// serverTime is a UTC moment as the server's wall clock, for STOPAT on
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
func serverTime(t time.Time, prev, last *cofferv1.BackupMetadata) (time.Time, error) {
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

// backupOffset is the server's local time less UTC when it took the
// backup: msdb's time_zone of that backup set, or, when msdb does not
// say, the offset now (the backup has just finished).
func (s *Service) backupOffset(ctx context.Context, log *slog.Logger, c *mssql.Client, database string, m *cofferv1.BackupMetadata) (time.Duration, error) {
	offset, err := c.BackupTimeZone(ctx, database, m.GetFirstLsn(), m.GetLastLsn())
	if err == nil {
		return offset, nil
	}
	if !errors.Is(err, mssql.ErrNoTimeZone) {
		log.WarnContext(ctx, "backup time zone not readable from msdb", slog.Any("error", err))
	}
	return c.UTCOffset(ctx)
}
