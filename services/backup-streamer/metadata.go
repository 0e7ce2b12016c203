package streamer

import (
	"context"
	"errors"
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
