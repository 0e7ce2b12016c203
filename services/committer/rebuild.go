package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// RebuildOptions says how far Rebuild goes.
type RebuildOptions struct {
	// Prune also deletes the records whose manifest is not in the vault
	// (a record is only deleted after its manifest is found missing on a
	// second look). Without it such records are kept and reported: a
	// catalog pointed at the wrong vault loses nothing.
	Prune bool
	// Vault is the name of the vault Rebuild reads ("": the default):
	// the records it makes say so, and only the records of that vault
	// can be missing from it.
	Vault string
}

// Unreadable is a manifest Rebuild could not read, and why.
type Unreadable struct {
	Manifest string
	Err      error
}

// RebuildReport is what Rebuild did.
type RebuildReport struct {
	// Manifests is how many manifests the vault lists.
	Manifests int
	// Recorded is how many recovery points were missing from the catalog
	// and are now recorded; Kept, how many were there already and were
	// left as they are.
	Recorded, Kept int
	// Unreadable are the manifests that could not be read (damaged,
	// sealed by a key the vault does not have) or hold no recovery point.
	Unreadable []Unreadable
	// Missing are the catalog keys of records whose manifest is not in
	// the vault; Pruned, how many of them were deleted (RebuildOptions.Prune).
	Missing []string
	Pruned  int
	// Deleted is how many of the points recorded were soft-deleted, as
	// the vault's marks say (coffer rp undelete brings them back within
	// their window).
	Deleted int
}

// Rebuild records in cat every recovery point the manifests of v hold that
// cat lacks: the vault is self-describing, so a lost catalog is recreated
// from the vault alone. It merges: a record already in the catalog is the
// newer (the manifest is written once, at the commit; a verification is
// added to the record later) and is kept as it is, so Rebuild is
// idempotent and safe while the committer runs. Manifests that cannot be
// read are named in the report and skipped; the rest are still recorded.
// The error is for what stops it (the vault or the catalog unreachable).
func Rebuild(ctx context.Context, v *vault.Vault, cat *catalog.Catalog, o RebuildOptions) (RebuildReport, error) {
	return rebuild(ctx, v, cat.Bucket(cofferv1.BucketRecoveryPoints), o)
}

func rebuild(ctx context.Context, v *vault.Vault, rps *catalog.Bucket, o RebuildOptions) (RebuildReport, error) {
	var rep RebuildReport
	inVault := make(map[string]bool)
	unreadable := make(map[string]bool)
	marks, badMarks, err := deleteMarks(ctx, v)
	if err != nil {
		return rep, fmt.Errorf("rebuild recovery points: %w", err)
	}
	rep.Unreadable = append(rep.Unreadable, badMarks...)
	err = v.ListManifests(ctx, func(id string) error {
		rep.Manifests++
		m, err := v.GetManifest(ctx, id)
		var rp *cofferv1.RecoveryPoint
		if err == nil {
			rp, err = RecoveryPointOf(m)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Unreadable = append(rep.Unreadable, Unreadable{Manifest: id, Err: err})
			unreadable[id] = true
			return nil
		}
		// the manifest is where it is found, whatever vault it was
		// committed to
		rp.Vault = vaultName(o.Vault)
		if mark := marks[rp.GetId()]; mark != nil {
			applyDeleteMark(rp, mark)
		}
		key := catalog.Key(rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase(), rp.GetId())
		inVault[key] = true
		_, err = rps.Create(ctx, key, rp)
		switch {
		case err == nil:
			rep.Recorded++
			if rp.GetDeletedAt() != nil {
				rep.Deleted++
			}
		case errors.Is(err, catalog.ErrExists):
			rep.Kept++
		default:
			return fmt.Errorf("record recovery point %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("rebuild recovery points: %w", err)
	}
	err = rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(key string, m proto.Message) error {
		rp := m.(*cofferv1.RecoveryPoint)
		if !inVault[key] && !unreadable[rp.GetManifest()] && vaultName(rp.GetVault()) == vaultName(o.Vault) {
			rep.Missing = append(rep.Missing, key)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("rebuild recovery points: list catalog: %w", err)
	}
	if !o.Prune {
		return rep, nil
	}
	for _, key := range rep.Missing {
		var rp cofferv1.RecoveryPoint
		if _, err := rps.Get(ctx, key, &rp); err != nil {
			continue // gone meanwhile
		}
		_, err := v.GetManifest(ctx, rp.GetManifest())
		if !errors.Is(err, blob.ErrNotExist) {
			continue // committed meanwhile, or unreadable: keep the record
		}
		if err := rps.Delete(ctx, key); err != nil {
			return rep, fmt.Errorf("rebuild recovery points: delete %s: %w", key, err)
		}
		rep.Pruned++
	}
	return rep, nil
}

// add adds what another rebuild did to r.
func (r *RebuildReport) add(o RebuildReport) {
	r.Manifests += o.Manifests
	r.Recorded += o.Recorded
	r.Kept += o.Kept
	r.Unreadable = append(r.Unreadable, o.Unreadable...)
	r.Missing = append(r.Missing, o.Missing...)
	r.Pruned += o.Pruned
	r.Deleted += o.Deleted
}

// String says what a rebuild did, as a job's detail shows it.
func (r RebuildReport) String() string {
	s := fmt.Sprintf("%d manifests in the vault: %d recovery points recorded, %d already in the catalog kept as they were",
		r.Manifests, r.Recorded, r.Kept)
	if r.Deleted > 0 {
		s += fmt.Sprintf(" (%d of those recorded deleted, as they were: coffer rp undelete brings them back within their window)", r.Deleted)
	}
	if len(r.Unreadable) > 0 {
		s += fmt.Sprintf(", %d manifests unreadable", len(r.Unreadable))
	}
	switch {
	case r.Pruned > 0:
		s += fmt.Sprintf("; %d of the %d records whose manifest is not in the vault deleted", r.Pruned, len(r.Missing))
	case len(r.Missing) > 0:
		names := make([]string, len(r.Missing))
		for i, key := range r.Missing {
			names[i] = key
			if p, err := catalog.SplitKey(key); err == nil && len(p) == 3 {
				names[i] = p[0] + "/" + p[1] + " " + p[2]
			}
		}
		s += fmt.Sprintf("; %d records name a manifest not in the vault (kept; --prune deletes them): %s",
			len(r.Missing), strings.Join(names, ", "))
	}
	return s
}

// rebuildRequested runs a rebuild a person asked for as a job: the
// recovery points (Rebuild), then the policies of the vault's copy that
// the catalog lacks (restorePolicies). The job's detail says what it did;
// it fails, naming them, when some manifests or the copy of the policies
// could not be read, though everything else is put back.
func (s *Service) rebuildRequested(ctx context.Context, e *cofferv1.CatalogRebuildRequested) error {
	jid, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind = cofferv1.JobKind_JOB_KIND_REBUILD
	done := false
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if done = final(j.State); !done {
			fill(j, f)
			j.State, j.Step = cofferv1.JobState_JOB_STATE_RUNNING, "reading the vault's manifests"
		}
	}); err != nil || done {
		return err // done: a redelivery of a rebuild that ended
	}
	vaults, err := s.restoreVaults(ctx)
	if err != nil && !errors.Is(err, vault.ErrCorrupt) {
		return err
	}
	if err != nil {
		s.log.WarnContext(ctx, "the default vault's copy of the named vaults is unreadable; rebuilding from the vaults the catalog names", slog.Any("error", err))
	}
	var rep RebuildReport
	detail := ""
	unopened, err := s.eachVault(ctx, func(name string, v *vault.Vault) error {
		one, err := rebuild(ctx, v, s.rps, RebuildOptions{Prune: e.GetPrune(), Vault: name})
		if err != nil {
			return err
		}
		if name == "" {
			detail = one.String()
		} else {
			detail += fmt.Sprintf("; vault %s: %s", name, one)
		}
		rep.add(one)
		return nil
	})
	if err != nil {
		return err // transient: redelivered, and a rebuild again changes nothing already done
	}
	if len(vaults) > 0 {
		detail += fmt.Sprintf("; %d named vaults put back from the default vault's copy: %s", len(vaults), strings.Join(vaults, ", "))
	}
	policies, perr := s.restorePolicies(ctx, jid)
	if perr != nil && !errors.Is(perr, vault.ErrCorrupt) {
		return perr
	}
	log := s.log.With(slog.String(telemetry.JobIDKey, jid))
	log.InfoContext(ctx, "catalog rebuilt from the vault", slog.Int("manifests", rep.Manifests), slog.Int("recorded", rep.Recorded),
		slog.Int("kept", rep.Kept), slog.Int("unreadable", len(rep.Unreadable)), slog.Int("missing", len(rep.Missing)), slog.Int("pruned", rep.Pruned),
		slog.Int("policies", len(policies)))
	if len(policies) > 0 {
		detail += fmt.Sprintf("; %d policies put back from the vault's copy: %s", len(policies), strings.Join(policies, ", "))
	}
	var skipped []string
	for _, u := range rep.Unreadable {
		log.WarnContext(ctx, "manifest not read by the rebuild", slog.String("manifest", u.Manifest), slog.Any("error", u.Err))
		skipped = append(skipped, fmt.Sprintf("manifest %s (%v)", u.Manifest, u.Err))
	}
	for _, err := range unopened {
		log.WarnContext(ctx, "named vault not read by the rebuild", slog.Any("error", err))
		skipped = append(skipped, err.Error())
	}
	if perr != nil {
		log.WarnContext(ctx, "the vault's copy of the policies not read by the rebuild", slog.Any("error", perr))
		skipped = append(skipped, fmt.Sprintf("the vault's copy of the policies (%v)", perr))
	}
	if len(skipped) == 0 {
		return s.updateJob(ctx, jid, func(j *cofferv1.Job) {
			if !final(j.State) {
				applySucceeded(j, 0, "", f)
				j.Detail = detail
			}
		})
	}
	failed := &cofferv1.JobFailed{
		Meta:    event.Meta(event.ID("failed", jid, Name), jid, s.cfg.Now()),
		Kind:    cofferv1.JobKind_JOB_KIND_REBUILD,
		Reason:  "could not be read and skipped (everything else is in the catalog): " + strings.Join(skipped, "; "),
		Service: Name,
	}
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if !final(j.State) {
			applyFailed(j, failed, f)
			j.Detail = detail
		}
	}); err != nil {
		return err
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectJobFailed, failed, failed.Meta.EventId); err != nil {
		return fmt.Errorf("publish failure of job %s: %w", jid, err)
	}
	return nil
}
