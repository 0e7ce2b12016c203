package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// A person's deletion of recovery points is a soft delete: the points are
// marked deleted in the catalog (hidden from listings and restores) and
// keep their manifests, so their chunks stay, for Config.SoftDeleteDays.
// Until then an undelete brings them back as they were; after it,
// CollectGarbage purges them as expiry deletes a point whose retention
// ended, and the vault's collection frees their chunks.

// softDelete marks the recovery points e names deleted, or refuses the
// whole request, naming why, as the job's failure: a point that does not
// exist or is already deleted, or one that kept points need to be
// restored, unless e says to delete those too.
func (s *Service) softDelete(ctx context.Context, e *cofferv1.RecoveryPointsDeleteRequested) error {
	db := e.GetDatabase()
	jid, f, rps, err := s.startChange(ctx, e.GetMeta(), db)
	if err != nil || rps == nil {
		return err
	}
	ids, reason := deletion(rps, e, jid)
	if reason != "" {
		return s.refuse(ctx, jid, f, reason)
	}
	now := s.cfg.Now()
	purge := timestamppb.New(now.Add(s.cfg.softDeleteWindow()))
	for _, id := range ids {
		var marked *cofferv1.RecoveryPoint // as this job marked it
		_, err := s.updatePoint(ctx, db, id, func(rp *cofferv1.RecoveryPoint) bool {
			if rp.GetDeletedAt() != nil {
				if rp.GetDeleteJobId() == jid {
					marked = proto.CloneOf(rp) // by an earlier delivery
				}
				return false
			}
			rp.DeletedAt, rp.DeletedBy, rp.PurgeAfter, rp.DeleteJobId = timestamppb.New(now), e.GetRequestedBy(), purge, jid
			marked = proto.CloneOf(rp)
			return true
		})
		if err == nil && marked != nil {
			// the vaults keep the mark too, for a rebuild of the catalog
			err = s.putDeleteMark(ctx, marked)
		}
		if err != nil {
			return fmt.Errorf("mark recovery point %s deleted: %w", id, err)
		}
	}
	if tail := tailOf(rps, ids); tail != "" {
		// the scheduler's next differential or log would build on a
		// deleted point, and be lost with it: the next backup is a full
		cb := &cofferv1.ChainBroken{Meta: event.Meta(event.ID("deleted-tail", jid), jid, now), Database: db, After: tail,
			Reason: fmt.Sprintf("recovery point %s, the end of the backup chain, was deleted", tail)}
		if err := s.bus.Publish(ctx, cofferv1.SubjectChainBroken, cb, cb.Meta.EventId); err != nil {
			return fmt.Errorf("publish the chain's break after deleting %s: %w", tail, err)
		}
	}
	detail := fmt.Sprintf("deleted %d recovery point(s) of %s/%s: %s; restorable (coffer rp undelete) until %s, then garbage collection deletes them",
		len(ids), db.GetInstance(), db.GetDatabase(), strings.Join(ids, ", "), purge.AsTime().UTC().Format(time.RFC3339))
	if len(ids) == 0 {
		detail = fmt.Sprintf("%s/%s has no recovery points to delete", db.GetInstance(), db.GetDatabase())
	}
	s.log.InfoContext(ctx, "recovery points deleted", slog.String("job_id", jid), slog.String("instance", db.GetInstance()),
		slog.String("database", db.GetDatabase()), slog.Int("count", len(ids)), slog.String("by", e.GetRequestedBy()))
	return s.succeed(ctx, jid, f, "deleted", detail)
}

// deletion returns the points a delete request marks, or why it is
// refused. Points this job marked before a redelivery count as not yet
// deleted.
func deletion(rps []*cofferv1.RecoveryPoint, e *cofferv1.RecoveryPointsDeleteRequested, jid string) (ids []string, reason string) {
	var live []*cofferv1.RecoveryPoint
	byID := map[string]*cofferv1.RecoveryPoint{}
	for _, rp := range rps {
		byID[rp.GetId()] = rp
		if rp.GetDeletedAt() == nil || rp.GetDeleteJobId() == jid {
			live = append(live, rp)
		}
	}
	if e.GetAll() {
		for _, rp := range live {
			ids = append(ids, rp.GetId())
		}
		return ids, ""
	}
	var problems []string
	for _, id := range e.GetRecoveryPoints() {
		rp := byID[id]
		switch {
		case slices.Contains(ids, id):
		case rp == nil:
			problems = append(problems, fmt.Sprintf("no recovery point %s of %s/%s", id, e.GetDatabase().GetInstance(), e.GetDatabase().GetDatabase()))
		case rp.GetDeletedAt() != nil && rp.GetDeleteJobId() != jid:
			problems = append(problems, fmt.Sprintf("recovery point %s is already deleted (%s)", id, policy.DeletedNote(rp)))
		default:
			ids = append(ids, id)
		}
	}
	if len(problems) > 0 {
		return nil, strings.Join(problems, "; ")
	}
	pts, err := policy.PointsFromRecords(live)
	if err != nil {
		return nil, err.Error()
	}
	orphans := policy.Orphans(pts, ids)
	if len(orphans) > 0 && !e.GetWithDependents() {
		return nil, fmt.Sprintf("recovery point(s) %s cannot be deleted alone: %d kept point(s) need them to be restored: %s; delete those too (--with-dependents) or keep them",
			strings.Join(ids, ", "), len(orphans), list(orphans, 20))
	}
	return append(ids, orphans...), ""
}

// tailOf returns the point among ids that the database's next scheduled
// backup would build on: the latest full (a differential's base) or the
// latest point of the chain (a log's). "" when ids holds neither.
func tailOf(rps []*cofferv1.RecoveryPoint, ids []string) string {
	var last, lastFull *cofferv1.RecoveryPoint
	for _, rp := range rps {
		pt, err := policy.PointFromRecord(rp)
		if err != nil || pt.Kind == policy.CopyOnlyFull || (rp.GetDeletedAt() != nil && !slices.Contains(ids, rp.GetId())) {
			continue
		}
		if last == nil || pt.Taken.After(last.GetBackup().GetBackupFinish().AsTime()) {
			last = rp
		}
		if pt.Kind == policy.Full && (lastFull == nil || pt.Taken.After(lastFull.GetBackup().GetBackupFinish().AsTime())) {
			lastFull = rp
		}
	}
	for _, rp := range []*cofferv1.RecoveryPoint{lastFull, last} {
		if rp != nil && slices.Contains(ids, rp.GetId()) {
			return rp.GetId()
		}
	}
	return ""
}

// undelete brings deleted recovery points back, with the deleted points
// they need to be restored, or refuses the whole request as the job's
// failure: a point that does not exist, or whose soft-delete window has
// ended. A point that is not deleted is left as it is.
func (s *Service) undelete(ctx context.Context, e *cofferv1.RecoveryPointsUndeleteRequested) error {
	db := e.GetDatabase()
	jid, f, rps, err := s.startChange(ctx, e.GetMeta(), db)
	if err != nil || rps == nil {
		return err
	}
	now := s.cfg.Now()
	ids, needed, reason := undeletion(rps, e, now)
	if reason != "" {
		return s.refuse(ctx, jid, f, reason)
	}
	for _, id := range append(ids, needed...) {
		var point *cofferv1.RecoveryPoint
		found, err := s.updatePoint(ctx, db, id, func(rp *cofferv1.RecoveryPoint) bool {
			point = proto.CloneOf(rp)
			if rp.GetDeletedAt() == nil {
				return false
			}
			rp.DeletedAt, rp.DeletedBy, rp.PurgeAfter, rp.DeleteJobId = nil, "", nil, ""
			return true
		})
		if err == nil && found {
			// after the record: a mark left by a failure here is dropped
			// by the redelivery
			err = s.dropDeleteMark(ctx, point)
		}
		if err != nil {
			return fmt.Errorf("undelete recovery point %s: %w", id, err)
		}
	}
	detail := fmt.Sprintf("undeleted %d recovery point(s) of %s/%s: %s", len(ids)+len(needed), db.GetInstance(), db.GetDatabase(), strings.Join(ids, ", "))
	if len(needed) > 0 {
		detail += fmt.Sprintf(", and %s, which they need to be restored", strings.Join(needed, ", "))
	}
	s.log.InfoContext(ctx, "recovery points undeleted", slog.String("job_id", jid), slog.String("instance", db.GetInstance()),
		slog.String("database", db.GetDatabase()), slog.Int("count", len(ids)+len(needed)), slog.String("by", e.GetRequestedBy()))
	return s.succeed(ctx, jid, f, "undeleted", detail)
}

// undeletion returns the deleted points an undelete request names and the
// other deleted ones they need, or why it is refused.
func undeletion(rps []*cofferv1.RecoveryPoint, e *cofferv1.RecoveryPointsUndeleteRequested, now time.Time) (ids, needed []string, reason string) {
	byID := map[string]*cofferv1.RecoveryPoint{}
	for _, rp := range rps {
		byID[rp.GetId()] = rp
	}
	var problems []string
	check := func(rp *cofferv1.RecoveryPoint) {
		if end := rp.GetPurgeAfter(); end != nil && !now.Before(end.AsTime()) {
			problems = append(problems, fmt.Sprintf("recovery point %s cannot be brought back: %s, and that window has ended; garbage collection deletes it",
				rp.GetId(), policy.DeletedNote(rp)))
		}
	}
	for _, id := range e.GetRecoveryPoints() {
		rp := byID[id]
		switch {
		case rp == nil:
			problems = append(problems, fmt.Sprintf("no recovery point %s of %s/%s (a deleted point is gone for good once its soft-delete window ended and garbage collection ran)",
				id, e.GetDatabase().GetInstance(), e.GetDatabase().GetDatabase()))
		case rp.GetDeletedAt() != nil && !slices.Contains(ids, id):
			check(rp)
			ids = append(ids, id)
		}
	}
	pts, err := policy.PointsFromRecords(rps)
	if err == nil {
		for _, id := range ids {
			chain, err := policy.Restorable(pts, id)
			if err != nil {
				continue // it was not restorable before it was deleted either
			}
			for _, c := range chain {
				if rp := byID[c]; rp.GetDeletedAt() != nil && !slices.Contains(ids, c) && !slices.Contains(needed, c) {
					check(rp)
					needed = append(needed, c)
				}
			}
		}
	}
	if len(problems) > 0 {
		return nil, nil, strings.Join(problems, "; ")
	}
	return ids, needed, ""
}

// purgeDeleted deletes the recovery points whose soft-delete window ended
// by now, as expiry deletes them, so that the collection that follows
// frees their chunks. It returns how many it deleted.
func (s *Service) purgeDeleted(ctx context.Context, now time.Time) (int, error) {
	var due []*cofferv1.RecoveryPoint
	err := s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(_ string, m proto.Message) error {
		if rp := m.(*cofferv1.RecoveryPoint); purgeDue(rp, now) {
			due = append(due, rp)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list deleted recovery points: %w", err)
	}
	var ids []string
	for _, rp := range due {
		db := rp.GetDatabase()
		// an undelete may have come in since the listing
		var cur cofferv1.RecoveryPoint
		if _, err := s.rps.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), rp.GetId()), &cur); err != nil || !purgeDue(&cur, now) {
			if err != nil && !errors.Is(err, catalog.ErrNotFound) {
				return len(ids), fmt.Errorf("read recovery point %s: %w", rp.GetId(), err)
			}
			continue
		}
		err := s.deletePoint(ctx, db, rp.GetId())
		if errors.Is(err, blob.ErrLocked) {
			// an immutable vault keeps it until its lock passes: a later
			// collection purges it
			s.log.InfoContext(ctx, "deleted recovery point still locked by the store; purged later",
				slog.String("recovery_point", rp.GetId()), slog.String("instance", db.GetInstance()), slog.String("database", db.GetDatabase()))
			continue
		}
		if err != nil {
			return len(ids), err
		}
		ids = append(ids, fmt.Sprintf("%s (%s/%s)", rp.GetId(), db.GetInstance(), db.GetDatabase()))
	}
	if len(ids) == 0 {
		return 0, nil
	}
	jid := event.DerivedJobID(now, "purge", now.String())
	j := &cofferv1.Job{Id: jid, Kind: cofferv1.JobKind_JOB_KIND_DELETE, State: cofferv1.JobState_JOB_STATE_SUCCEEDED,
		Percent: 100, Step: "soft-delete window ended", CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
		Detail: fmt.Sprintf("deleted %d recovery point(s) whose soft-delete window ended: %s; their chunks are freed by garbage collection",
			len(ids), list(ids, 50))}
	if _, err := s.jobs.Put(ctx, catalog.Key(jid), j); err != nil {
		return len(ids), err
	}
	s.log.InfoContext(ctx, "deleted recovery points purged", slog.Int("count", len(ids)))
	return len(ids), nil
}

// purgeDue reports whether rp is soft-deleted and its window ended by now.
func purgeDue(rp *cofferv1.RecoveryPoint, now time.Time) bool {
	return rp.GetDeletedAt() != nil && rp.GetPurgeAfter() != nil && !now.Before(rp.GetPurgeAfter().AsTime())
}

// deletePoint deletes a recovery point for good: the manifest first
// (after which the backup no longer exists), then the catalog record.
func (s *Service) deletePoint(ctx context.Context, db *cofferv1.DatabaseRef, id string) error {
	key := catalog.Key(db.GetInstance(), db.GetDatabase(), id)
	// the record says which vault the point is in; without one (deleted
	// already) it is the default vault, as before vaults had names
	var rp cofferv1.RecoveryPoint
	if _, err := s.rps.Get(ctx, key, &rp); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("read recovery point %s: %w", id, err)
	}
	// its copies first, so that no copy outlives the record that names it
	for _, c := range rp.GetCopies() {
		if err := s.deleteManifestIn(ctx, c.GetVault(), id); err != nil {
			return err
		}
	}
	if err := s.deleteManifestIn(ctx, rp.GetVault(), id); err != nil {
		return err
	}
	if rp.GetDeletedAt() != nil {
		if err := s.dropDeleteMark(ctx, &rp); err != nil {
			return err
		}
	}
	if err := s.rps.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete recovery point %s: %w", id, err)
	}
	return nil
}

// deleteManifestIn deletes manifest id in the vault called name; one
// already gone is no error.
func (s *Service) deleteManifestIn(ctx context.Context, name, id string) error {
	v, err := s.vaultOf(ctx, name)
	if err != nil {
		return fmt.Errorf("delete manifest %s: %w", id, err)
	}
	if err := v.DeleteManifest(ctx, id); err != nil && !errors.Is(err, blob.ErrNotExist) {
		return fmt.Errorf("delete manifest %s in vault %s: %w", id, vaultLabel(name), err)
	}
	return nil
}

// startChange begins a delete or undelete of db's recovery points: it
// returns the job, what the event says of it, and every point of db,
// deleted ones included. rps is nil, with no error, when the job already
// has its outcome (a redelivery) and there is nothing left to do.
func (s *Service) startChange(ctx context.Context, meta *cofferv1.EventMeta, db *cofferv1.DatabaseRef) (jid string, f facts, rps []*cofferv1.RecoveryPoint, err error) {
	if jid, err = jobID(meta); err != nil {
		return "", f, nil, err
	}
	f = eventFacts(ctx, meta)
	f.kind, f.database = cofferv1.JobKind_JOB_KIND_DELETE, db
	if ended, err := s.jobEnded(ctx, jid); err != nil || ended {
		return jid, f, nil, err
	}
	rps, err = s.pointsOf(ctx, db)
	if rps == nil && err == nil {
		rps = []*cofferv1.RecoveryPoint{} // none: the job still records its outcome
	}
	return jid, f, rps, err
}

// pointsOf lists the recovery points of db, deleted ones included.
func (s *Service) pointsOf(ctx context.Context, db *cofferv1.DatabaseRef) ([]*cofferv1.RecoveryPoint, error) {
	var out []*cofferv1.RecoveryPoint
	err := s.rps.List(ctx, catalog.Key(db.GetInstance(), db.GetDatabase()), func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(_ string, m proto.Message) error {
			rp := m.(*cofferv1.RecoveryPoint)
			if rp.GetDatabase().GetInstance() == db.GetInstance() && rp.GetDatabase().GetDatabase() == db.GetDatabase() {
				out = append(out, rp)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list recovery points of %s/%s: %w", db.GetInstance(), db.GetDatabase(), err)
	}
	return out, nil
}

// jobEnded reports whether job id has its outcome recorded.
func (s *Service) jobEnded(ctx context.Context, id string) (bool, error) {
	var j cofferv1.Job
	if _, err := s.jobs.Get(ctx, catalog.Key(id), &j); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("read job %s: %w", id, err)
	}
	return final(j.GetState()), nil
}

// refuse records a request that can never be carried out as its job's
// failure, with the reason a person reads.
func (s *Service) refuse(ctx context.Context, jid string, f facts, reason string) error {
	s.log.WarnContext(ctx, "request refused", slog.String("job_id", jid), slog.String("reason", reason))
	failed := &cofferv1.JobFailed{Meta: event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()), Kind: f.kind,
		Database: f.database, Reason: reason, Service: Name}
	return s.reportFailure(ctx, jid, failed, f)
}

// succeed records job jid's success with what it did.
func (s *Service) succeed(ctx context.Context, jid string, f facts, step, detail string) error {
	return s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if !final(j.State) {
			applySucceeded(j, 0, "", f)
			j.Step, j.Detail = step, detail
		}
	})
}

// list joins ids, the first max of them and how many more.
func list(ids []string, max int) string {
	if len(ids) <= max {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:max], ", "), len(ids)-max)
}
