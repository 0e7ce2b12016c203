package committer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// vaultName is how a recovery point records the vault called name: the
// default vault as "", as every point committed before vaults had names.
func vaultName(name string) string {
	if daemon.IsDefaultVault(name) {
		return ""
	}
	return name
}

// vaultLabel is how messages name the vault called name.
func vaultLabel(name string) string { return cmp.Or(name, daemon.DefaultVault) }

// vaultOf returns the vault called name ("": the default). A name no
// vault has can never be committed to or deleted from: a rejection.
func (s *Service) vaultOf(ctx context.Context, name string) (*vault.Vault, error) {
	v, err := s.vaults.Get(ctx, name)
	if errors.Is(err, daemon.ErrUnknownVault) {
		return nil, reject("%v", err)
	}
	return v, err
}

// eachVault calls fn with the default vault ("") and then each named
// one. A named vault that cannot be opened, or whose fn fails, does not
// stop the others: its error is in failed. err is the default vault's,
// or the catalog's.
func (s *Service) eachVault(ctx context.Context, fn func(name string, v *vault.Vault) error) (failed []error, err error) {
	if err := fn("", s.vault); err != nil {
		return nil, err
	}
	names, err := s.vaults.Names(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		v, err := s.vaults.Get(ctx, name)
		if err == nil {
			err = fn(name, v)
		}
		if err != nil {
			if ctx.Err() != nil {
				return failed, ctx.Err()
			}
			failed = append(failed, fmt.Errorf("vault %s: %w", name, err))
		}
	}
	return failed, nil
}

// vaultCreate creates a named vault a person asked for, as a job: the
// vault in its store (or the one already there, opened with the master
// key), then its record in the vaults bucket, then the default vault's
// copy of the bucket. A name already recorded with the same store
// succeeds again; with another store, or a store that cannot be opened,
// the job fails saying why, and nothing is recorded.
func (s *Service) vaultCreate(ctx context.Context, e *cofferv1.VaultCreateRequested) error {
	jid, err := jobID(e.GetMeta())
	if err != nil {
		return err
	}
	f := eventFacts(ctx, e.GetMeta())
	f.kind = cofferv1.JobKind_JOB_KIND_VAULT_CREATE
	r := e.GetVault()
	log := s.log.With(slog.String(telemetry.JobIDKey, jid), slog.String("vault", r.GetName()))
	done := false
	if err := s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if done = final(j.State); !done {
			fill(j, f)
			j.State, j.Step = cofferv1.JobState_JOB_STATE_RUNNING, "creating the vault"
		}
	}); err != nil || done {
		return err
	}
	fail := func(reason string) error {
		log.WarnContext(ctx, "vault not created", slog.String("reason", reason))
		return s.endFailed(ctx, jid, f, reason)
	}
	if err := daemon.ValidateVaultRecord(r); err != nil {
		return fail(err.Error())
	}
	existing, err := s.vaults.Record(ctx, r.GetName())
	switch {
	case err == nil && !daemon.SameStore(existing, r):
		return fail(fmt.Sprintf("a vault called %s already exists, in another store", r.GetName()))
	case err != nil && !errors.Is(err, daemon.ErrUnknownVault):
		return err
	}
	if _, err := s.vaults.Create(ctx, r); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail(err.Error())
	}
	switch {
	case existing == nil:
		if _, err := s.vaultRecords.Create(ctx, catalog.Key(r.GetName()), r); err != nil && !errors.Is(err, catalog.ErrExists) {
			return err
		}
	case r.GetObjectLock() != "" && existing.GetObjectLock() == "":
		// made immutable now: the record says so from here on
		existing.ObjectLock = r.GetObjectLock()
		if _, err := s.vaultRecords.Put(ctx, catalog.Key(r.GetName()), existing); err != nil {
			return err
		}
	}
	if err := s.putVaultsCopy(ctx); err != nil {
		log.WarnContext(ctx, "the default vault's copy of the vaults not written; the next vault create writes it", slog.Any("error", err))
	}
	log.InfoContext(ctx, "vault created")
	return s.updateJob(ctx, jid, func(j *cofferv1.Job) {
		if !final(j.State) {
			applySucceeded(j, 0, "", f)
			j.Detail = "vault " + r.GetName() + " created"
		}
	})
}

// putVaultsCopy writes every vault record to the default vault, whose
// copy a rebuild of a lost catalog reads (restoreVaults). The S3 secret
// keys in it stay sealed by the master key.
func (s *Service) putVaultsCopy(ctx context.Context) error {
	set := &cofferv1.VaultSet{}
	err := s.vaultRecords.List(ctx, "", func() proto.Message { return &cofferv1.VaultRecord{} }, func(_ string, m proto.Message) error {
		set.Vaults = append(set.Vaults, m.(*cofferv1.VaultRecord))
		return nil
	})
	if err != nil {
		return err
	}
	data, err := protojson.Marshal(set)
	if err != nil {
		return err
	}
	return s.vault.PutCatalogCopy(ctx, daemon.VaultsCopy, data)
}

// restoreVaults records each vault of the default vault's copy that the
// vaults bucket lacks, and returns their names.
func (s *Service) restoreVaults(ctx context.Context) ([]string, error) {
	recs, err := daemon.VaultRecordsIn(ctx, s.vault)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range recs {
		if daemon.ValidateVaultRecord(r) != nil {
			continue
		}
		_, err := s.vaultRecords.Create(ctx, catalog.Key(r.GetName()), r)
		switch {
		case err == nil:
			out = append(out, r.GetName())
		case !errors.Is(err, catalog.ErrExists):
			return out, err
		}
	}
	return out, nil
}
