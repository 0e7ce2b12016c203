package committer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// planCopy plans rp's second copy from the policy's copy rule, at its
// commit: due After the point was taken, kept Retention from then. A
// point already in the rule's vault gets none.
func planCopy(p *policy.Policy, rp *cofferv1.RecoveryPoint, taken time.Time) {
	c := p.Copy
	if c == nil || vaultName(c.Vault) == vaultName(rp.GetVault()) {
		return
	}
	rp.Copies = []*cofferv1.RecoveryPointCopy{{Vault: vaultName(c.Vault),
		DueAt: timestamppb.New(taken.Add(c.After.D())), ExpiresAt: timestamppb.New(taken.Add(c.Retention.D()))}}
}

// copyJobID is the job that makes copy c of recovery point id: one per
// hour at most, so that a failed copy is tried again by a later sweep,
// and a sweep that runs again within the hour queues nothing new.
func copyJobID(id string, c *cofferv1.RecoveryPointCopy, now time.Time) string {
	return event.DerivedJobID(now.Truncate(time.Hour), "copy", id, c.GetVault())
}

// queueCopies queues the copies of rp that are due by now and not made,
// unless their job for this hour is already queued, running or done.
func (s *Service) queueCopies(ctx context.Context, rp *cofferv1.RecoveryPoint, now time.Time) error {
	if rp.GetDeletedAt() != nil {
		return nil
	}
	for _, c := range rp.GetCopies() {
		if c.GetCommittedAt() != nil || c.GetDueAt().AsTime().After(now) || !c.GetExpiresAt().AsTime().After(now) {
			continue
		}
		jid := copyJobID(rp.GetId(), c, now)
		var j cofferv1.Job
		if _, err := s.jobs.Get(ctx, catalog.Key(jid), &j); err == nil {
			continue // queued already: it runs, or failed and the next hour's job tries again
		} else if !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		db := rp.GetDatabase()
		q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jid), jid, now), Kind: cofferv1.JobKind_JOB_KIND_COPY,
			Database: db, Detail: fmt.Sprintf("copy recovery point %s to vault %s", rp.GetId(), vaultLabel(c.GetVault()))}
		if err := s.bus.Publish(ctx, cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
			return err
		}
		w := &cofferv1.CopyRequested{Meta: event.Meta(event.ID("copy-work", jid), jid, now), Database: db,
			RecoveryPoint: rp.GetId(), Vault: c.GetVault()}
		if err := s.bus.Publish(ctx, cofferv1.SubjectWorkCopy, w, w.Meta.EventId); err != nil {
			return err
		}
		s.log.InfoContext(ctx, "copy queued", slog.String(telemetry.JobIDKey, jid), slog.String(telemetry.RecoveryPointKey, rp.GetId()),
			slog.String("vault", c.GetVault()))
	}
	return nil
}

// sweepCopies queues every copy due by now (see queueCopies). It lists
// the recovery points only while some policy has a copy rule, so that a
// catalog without copies costs one listing of the policies a sweep.
func (s *Service) sweepCopies(ctx context.Context, now time.Time) error {
	copying := false
	err := s.policies.List(ctx, "", func() proto.Message { return &cofferv1.PolicyRecord{} }, func(_ string, m proto.Message) error {
		var p policy.Policy
		if json.Unmarshal([]byte(m.(*cofferv1.PolicyRecord).GetJson()), &p) == nil && p.Copy != nil {
			copying = true
		}
		return nil
	})
	if err != nil || !copying {
		return err
	}
	var due []*cofferv1.RecoveryPoint
	err = s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(_ string, m proto.Message) error {
		if rp := m.(*cofferv1.RecoveryPoint); len(rp.GetCopies()) > 0 {
			due = append(due, rp)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sweep copies: %w", err)
	}
	for _, rp := range due {
		if err := s.queueCopies(ctx, rp, now); err != nil {
			return fmt.Errorf("sweep copies: %w", err)
		}
	}
	return nil
}

// copyStreamed commits a copy: its manifest, written last in the target
// vault (unless an earlier delivery wrote it), then the copy on the
// point's record, then the job's outcome.
func (s *Service) copyStreamed(ctx context.Context, e *cofferv1.CopyStreamed) error {
	jid, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind, f.database = cofferv1.JobKind_JOB_KIND_COPY, e.GetDatabase()
	log := s.log.With(slog.String(telemetry.JobIDKey, jid), slog.String(telemetry.RecoveryPointKey, e.GetRecoveryPoint()),
		slog.String("vault", e.GetVault()))
	if by, err := s.cancelledBy(ctx, jid); err != nil || by != "" {
		if by != "" {
			log.InfoContext(ctx, "copy of a cancelled job not committed", slog.String("cancelled_by", by))
		}
		return err
	}
	err = s.commitCopy(ctx, e)
	if r := (*rejection)(nil); errors.As(err, &r) {
		log.WarnContext(ctx, "copy not committed", slog.String("reason", r.reason))
		return s.endFailed(ctx, jid, f, r.reason)
	}
	if err != nil {
		return fmt.Errorf("commit copy of %s: %w", e.GetRecoveryPoint(), err)
	}
	now := s.cfg.Now()
	found, err := s.updatePoint(ctx, e.GetDatabase(), e.GetRecoveryPoint(), func(rp *cofferv1.RecoveryPoint) bool {
		for _, c := range rp.GetCopies() {
			if vaultName(c.GetVault()) == vaultName(e.GetVault()) && c.GetCommittedAt() == nil {
				c.CommittedAt, c.JobId = timestamppb.New(now), jid
				return true
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	if !found {
		log.WarnContext(ctx, "copied recovery point no longer recorded; its copy is garbage once its manifest is deleted")
	}
	log.InfoContext(ctx, "copy committed", slog.Int64("new_bytes", e.GetNewBytes()))
	return s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if !final(j.State) {
			applySucceeded(j, e.GetSize(), e.GetRecoveryPoint(), f)
			j.Detail = fmt.Sprintf("recovery point %s copied to vault %s (%d new bytes stored there)", e.GetRecoveryPoint(), vaultLabel(e.GetVault()), e.GetNewBytes())
		}
	})
}

// commitCopy writes the copy's manifest in the target vault: the point's
// record as the copy keeps it (its vault the target, its expiry the
// copy's, no copies of its own), so that a rebuild from the target alone
// records the point there.
func (s *Service) commitCopy(ctx context.Context, e *cofferv1.CopyStreamed) error {
	db := e.GetDatabase()
	var rp cofferv1.RecoveryPoint
	if _, err := s.rps.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), e.GetRecoveryPoint()), &rp); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return reject("recovery point %s is not in the catalog", e.GetRecoveryPoint())
		}
		return err
	}
	var planned *cofferv1.RecoveryPointCopy
	for _, c := range rp.GetCopies() {
		if vaultName(c.GetVault()) == vaultName(e.GetVault()) {
			planned = c
		}
	}
	if planned == nil {
		return reject("recovery point %s has no copy planned in vault %s", rp.GetId(), vaultLabel(e.GetVault()))
	}
	dst, err := s.vaultOf(ctx, e.GetVault())
	if err != nil {
		return err
	}
	switch _, err := dst.GetManifest(ctx, rp.GetManifest()); {
	case err == nil:
		return lockCopy(ctx, dst, rp.GetManifest(), planned) // committed by an earlier delivery
	case !errors.Is(err, blob.ErrNotExist) && !errors.Is(err, vault.ErrCorrupt):
		return err
	}
	if e.GetDraft() == "" {
		return reject("the copy of %s names no chunk list", rp.GetId())
	}
	d, err := dst.GetDraft(ctx, e.GetDraft())
	switch {
	case errors.Is(err, blob.ErrNotExist), errors.Is(err, vault.ErrCorrupt):
		return reject("the chunk list of the copy cannot be read from vault %s: %v", vaultLabel(e.GetVault()), err)
	case err != nil:
		return err
	}
	if d.Size != rp.GetSize() || d.Checksum != rp.GetChecksum() {
		return reject("the copy's chunk list records %d bytes (checksum %q), the point %d bytes (%q)", d.Size, d.Checksum, rp.GetSize(), rp.GetChecksum())
	}
	kept := proto.Clone(&rp).(*cofferv1.RecoveryPoint)
	kept.Vault, kept.ExpiresAt, kept.Copies, kept.Verification = vaultName(e.GetVault()), planned.GetExpiresAt(), nil, nil
	meta, err := protojson.Marshal(kept)
	if err != nil {
		return fmt.Errorf("encode recovery point: %w", err)
	}
	created := rp.GetCommittedAt().AsTime()
	if t := rp.GetBackup().GetBackupFinish(); t != nil {
		created = t.AsTime()
	}
	m := &vault.Manifest{ID: rp.GetManifest(), CreatedAt: created.UTC().Truncate(time.Microsecond), Size: d.Size,
		Checksum: d.Checksum, Chunks: d.Chunks, Stripes: d.Stripes, Meta: meta}
	if err := dst.PutManifest(ctx, rp.GetManifest(), m); err != nil {
		var ce *vault.ChunkError
		if errors.As(err, &ce) && (errors.Is(err, blob.ErrNotExist) || errors.Is(err, vault.ErrCorrupt)) {
			return reject("cannot commit the copy: %v", ce)
		}
		return err
	}
	if err := dst.DeleteDraft(ctx, e.GetDraft()); err != nil {
		s.log.WarnContext(ctx, "draft of a committed copy not deleted; garbage collection will", slog.String("draft", e.GetDraft()), slog.Any("error", err))
	}
	return lockCopy(ctx, dst, rp.GetManifest(), planned)
}

// lockCopy locks a committed copy's objects in an immutable target vault
// until the copy expires, before the point's record says it is copied.
func lockCopy(ctx context.Context, dst *vault.Vault, manifest string, c *cofferv1.RecoveryPointCopy) error {
	if dst.ObjectLock() == "" || c.GetExpiresAt() == nil {
		return nil
	}
	return dst.RetainManifest(ctx, manifest, c.GetExpiresAt().AsTime())
}

// expirePoint ends recovery point id's retention in its vault. A point
// with a copy kept longer lives on there: its manifest in the first vault
// is deleted and its record points at the copy, with the copy's expiry,
// which the scheduler's sweep honours like any other. A point without
// one is deleted (deletePoint).
func (s *Service) expirePoint(ctx context.Context, db *cofferv1.DatabaseRef, id string, now time.Time) error {
	var rp cofferv1.RecoveryPoint
	if _, err := s.rps.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase(), id), &rp); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("read recovery point %s: %w", id, err)
	}
	var keep *cofferv1.RecoveryPointCopy
	for _, c := range rp.GetCopies() {
		if c.GetCommittedAt() != nil && c.GetExpiresAt().AsTime().After(now) &&
			(keep == nil || c.GetExpiresAt().AsTime().After(keep.GetExpiresAt().AsTime())) {
			keep = c
		}
	}
	if keep == nil {
		return s.deletePoint(ctx, db, id)
	}
	if err := s.deleteManifestIn(ctx, rp.GetVault(), id); err != nil {
		return err
	}
	_, err := s.updatePoint(ctx, db, id, func(rp *cofferv1.RecoveryPoint) bool {
		rest := rp.Copies[:0]
		for _, c := range rp.GetCopies() {
			if c.GetVault() != keep.GetVault() {
				rest = append(rest, c)
			}
		}
		rp.Vault, rp.ExpiresAt, rp.Copies = keep.GetVault(), keep.GetExpiresAt(), rest
		return true
	})
	if err == nil {
		s.log.InfoContext(ctx, "recovery point expired in its vault; its copy is kept", slog.String(telemetry.RecoveryPointKey, id),
			slog.String("vault", vaultLabel(keep.GetVault())), slog.Time("until", keep.GetExpiresAt().AsTime()))
	}
	return err
}

// expireCopies deletes the copies whose own retention ended by now: the
// manifest in the copy's vault (its chunks are then that vault's
// garbage), then the copy on the point's record. A copy never made that
// is past its retention is dropped from the record. It runs with each
// garbage collection, before the vaults are collected.
func (s *Service) expireCopies(ctx context.Context, now time.Time) error {
	var due []*cofferv1.RecoveryPoint
	err := s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(_ string, m proto.Message) error {
		rp := m.(*cofferv1.RecoveryPoint)
		for _, c := range rp.GetCopies() {
			if !c.GetExpiresAt().AsTime().After(now) {
				due = append(due, rp)
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("expire copies: %w", err)
	}
	for _, rp := range due {
		var gone []string
		for _, c := range rp.GetCopies() {
			if c.GetExpiresAt().AsTime().After(now) {
				continue
			}
			if err := s.deleteManifestIn(ctx, c.GetVault(), rp.GetId()); err != nil {
				// locked, or the vault unreachable: a later collection
				s.log.WarnContext(ctx, "expired copy not deleted; tried again at the next collection",
					slog.String(telemetry.RecoveryPointKey, rp.GetId()), slog.Any("error", err))
				continue
			}
			gone = append(gone, c.GetVault())
		}
		if len(gone) == 0 {
			continue
		}
		if _, err := s.updatePoint(ctx, rp.GetDatabase(), rp.GetId(), func(rp *cofferv1.RecoveryPoint) bool {
			n := len(rp.Copies)
			rp.Copies = slices.DeleteFunc(rp.Copies, func(c *cofferv1.RecoveryPointCopy) bool { return slices.Contains(gone, c.GetVault()) })
			return len(rp.Copies) != n
		}); err != nil {
			return fmt.Errorf("expire copies: %w", err)
		}
		s.log.InfoContext(ctx, "expired copies deleted", slog.String(telemetry.RecoveryPointKey, rp.GetId()), slog.Any("vaults", gone))
	}
	return nil
}
