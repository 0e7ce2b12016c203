package policy

import (
	"fmt"
	"math/rand/v2"

	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// PointFromRecord reads a recovery point record of the catalog as the
// chain and retention rules see it.
func PointFromRecord(rp *cofferv1.RecoveryPoint) (Point, error) {
	b := rp.GetBackup()
	pt := Point{
		ID:          rp.GetId(),
		OnDemand:    rp.GetOnDemand(),
		Fork:        b.GetLastRecoveryForkGuid(),
		FirstFork:   b.GetFirstRecoveryForkGuid(),
		BeginsChain: b.GetBeginsLogChain(),
		BulkLogged:  b.GetHasBulkLoggedData(),
		HealsBreak:  rp.GetChainBreak(),
		// differential_base_guid was always recorded; backup_set_guid only
		// since coffer links differentials by GUID
		BackupSetGUID:        b.GetBackupSetGuid(),
		DifferentialBaseGUID: b.GetDifferentialBaseGuid(),
		Tags:                 rp.GetTags(),
	}
	if t := b.GetBackupFinish(); t != nil {
		pt.Taken = t.AsTime()
	}
	if t := b.GetBackupStart(); t != nil {
		pt.Started = t.AsTime()
	}
	if t := rp.GetExpiresAt(); t != nil {
		pt.Expires = t.AsTime()
	}
	switch {
	case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL && b.GetCopyOnly(), b.GetType() == cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL:
		pt.Kind = CopyOnlyFull
	case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL:
		pt.Kind = Full
	case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
		pt.Kind = Differential
	case b.GetType() == cofferv1.BackupType_BACKUP_TYPE_LOG:
		pt.Kind = Log
	default:
		return pt, fmt.Errorf("recovery point %s: unknown backup type %v", rp.GetId(), b.GetType())
	}
	for _, f := range []struct {
		dst *LSN
		s   string
	}{{&pt.FirstLSN, b.GetFirstLsn()}, {&pt.LastLSN, b.GetLastLsn()}, {&pt.CheckpointLSN, b.GetCheckpointLsn()},
		{&pt.DifferentialBaseLSN, b.GetDifferentialBaseLsn()}, {&pt.DatabaseBackupLSN, b.GetDatabaseBackupLsn()}} {
		if f.s == "" {
			continue
		}
		l, err := ParseLSN(f.s)
		if err != nil {
			return pt, fmt.Errorf("recovery point %s: %w", rp.GetId(), err)
		}
		*f.dst = l
	}
	for _, m := range b.GetMarks() {
		l, err := ParseLSN(m.GetLsn())
		if err != nil {
			return pt, fmt.Errorf("recovery point %s: mark %q: %w", rp.GetId(), m.GetName(), err)
		}
		pt.Marks = append(pt.Marks, Mark{Name: m.GetName(), LSN: l, Time: m.GetTime().AsTime()})
	}
	return pt, nil
}

// PointsFromRecords reads recovery point records with PointFromRecord.
func PointsFromRecords(rps []*cofferv1.RecoveryPoint) ([]Point, error) {
	pts := make([]Point, 0, len(rps))
	for _, rp := range rps {
		pt, err := PointFromRecord(rp)
		if err != nil {
			return nil, err
		}
		pts = append(pts, pt)
	}
	return pts, nil
}

// VerifyTargetsOf picks a verification's test restores (VerifyTargets)
// from a database's recovery point records, as the work message carries
// them.
func VerifyTargetsOf(rps []*cofferv1.RecoveryPoint, r *rand.Rand) ([]*cofferv1.VerifyTarget, error) {
	pts, err := PointsFromRecords(rps)
	if err != nil {
		return nil, err
	}
	ts, err := VerifyTargets(pts, r)
	if err != nil {
		return nil, err
	}
	out := make([]*cofferv1.VerifyTarget, len(ts))
	for i, t := range ts {
		out[i] = &cofferv1.VerifyTarget{RecoveryPoints: t.Plan.IDs(), Label: t.Label, At: timestamppb.New(t.Plan.At)}
		if !t.Plan.StopAt.IsZero() {
			out[i].StopAt = timestamppb.New(t.Plan.StopAt)
		}
	}
	return out, nil
}
