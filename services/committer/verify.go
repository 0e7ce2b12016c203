package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// verifyCompleted records each test restore's result on its recovery
// point ("verified at, by, result") and, when every one passed, the verify
// job's success; a failed one fails the job through its JobFailed.
func (s *Service) verifyCompleted(ctx context.Context, e *cofferv1.VerifyCompleted) error {
	jid, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	db := e.GetDatabase()
	passed := true
	for _, r := range e.GetResults() {
		passed = passed && r.GetPassed()
		v := &cofferv1.Verification{At: e.GetMeta().GetTime(), JobId: jid, Instance: e.GetInstance(), Passed: r.GetPassed(),
			Detail: r.GetDetail(), RestoredTo: r.GetRestoredTo()}
		if err := s.recordVerification(ctx, db, r.GetRecoveryPoint(), v); err != nil {
			return err
		}
	}
	if !passed {
		return nil
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database = cofferv1.JobKind_JOB_KIND_VERIFY, db
	return s.updateJob(ctx, jid, func(j *cofferv1.Job) { applySucceeded(j, 0, "", f) })
}

// recordVerification sets a recovery point's verification, unless a later
// one is already recorded. A point deleted meanwhile (expired) is left
// deleted: the write is compare-and-set on the record it read.
func (s *Service) recordVerification(ctx context.Context, db *cofferv1.DatabaseRef, id string, v *cofferv1.Verification) error {
	found, err := s.updatePoint(ctx, db, id, func(rp *cofferv1.RecoveryPoint) bool {
		if old := rp.GetVerification(); old != nil && old.GetAt().AsTime().After(v.GetAt().AsTime()) {
			return false
		}
		rp.Verification = v
		return true
	})
	if err != nil {
		return fmt.Errorf("record verification of %s: %w", id, err)
	}
	if !found {
		s.log.InfoContext(ctx, "verified recovery point no longer exists", slog.String(telemetry.RecoveryPointKey, id))
	}
	return nil
}

// updatePoint reads recovery point id of db, lets apply change it, and
// writes it back when apply says it changed, compare-and-set, retrying
// on a conflicting write. found is false when there is no such point.
func (s *Service) updatePoint(ctx context.Context, db *cofferv1.DatabaseRef, id string, apply func(rp *cofferv1.RecoveryPoint) bool) (found bool, err error) {
	key := catalog.Key(db.GetInstance(), db.GetDatabase(), id)
	for range maxCASAttempts {
		var rp cofferv1.RecoveryPoint
		rev, err := s.rps.Get(ctx, key, &rp)
		if errors.Is(err, catalog.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read recovery point %s: %w", id, err)
		}
		if !apply(&rp) {
			return true, nil
		}
		if _, err := s.rps.Update(ctx, key, &rp, rev); err == nil {
			return true, nil
		} else if !errors.Is(err, catalog.ErrConflict) {
			return true, err
		}
	}
	return true, errors.New("too many concurrent updates")
}
