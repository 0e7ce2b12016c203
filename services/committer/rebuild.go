package committer

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Rebuild makes the recovery_points bucket of cat match the vault: it
// records the RecoveryPoint carried by every manifest in v (the vault is
// self-describing), and deletes records whose manifest is gone, so a lost
// or damaged catalog can be recreated from the vault alone. It is safe
// while the committer runs: a record is only deleted after its manifest
// is found missing on a second look.
//
// Manifests that cannot be read or hold no RecoveryPoint are skipped and
// reported in the returned error, joined; the rest are still recorded.
func Rebuild(ctx context.Context, v *vault.Vault, cat *catalog.Catalog) error {
	rps := cat.Bucket(cofferv1.BucketRecoveryPoints)
	var errs []error
	inVault := make(map[string]bool)
	err := v.ListManifests(ctx, func(id string) error {
		m, err := v.GetManifest(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err)
			return nil
		}
		rp, err := RecoveryPointOf(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("manifest %s: %w", id, err))
			return nil
		}
		key := catalog.Key(rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase(), rp.GetId())
		inVault[key] = true
		var cur cofferv1.RecoveryPoint
		if _, err := rps.Get(ctx, key, &cur); err == nil && proto.Equal(&cur, rp) {
			return nil
		}
		if _, err := rps.Put(ctx, key, rp); err != nil {
			return fmt.Errorf("record recovery point %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild recovery points: %w", err)
	}
	var stale []string
	err = rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(key string, m proto.Message) error {
		if !inVault[key] {
			stale = append(stale, key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild recovery points: list catalog: %w", err)
	}
	for _, key := range stale {
		var rp cofferv1.RecoveryPoint
		if _, err := rps.Get(ctx, key, &rp); err != nil {
			continue // gone meanwhile
		}
		_, err := v.GetManifest(ctx, rp.GetManifest())
		if !errors.Is(err, blob.ErrNotExist) {
			continue // committed meanwhile, or unreadable: keep the record
		}
		if err := rps.Delete(ctx, key); err != nil {
			return fmt.Errorf("rebuild recovery points: delete %s: %w", key, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rebuild recovery points: some manifests were skipped: %w", err)
	}
	return nil
}
