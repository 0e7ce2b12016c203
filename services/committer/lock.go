package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// relockAhead is how long before a recovery point's lock runs out the
// committer extends it when later points that depend on it keep it
// longer. A committer stopped for longer lets such a lock lapse before it
// is extended.
const relockAhead = 7 * 24 * time.Hour

// maxRelocked bounds what a committer remembers of the locks it extended.
const maxRelocked = 1 << 20

// relockChains, in an immutable vault, extends the lock of each recovery
// point that the scheduler keeps past its own expiry because later points
// depend on it (policy.KeptUntil: a full until the last log that needs it
// expires), once its lock would run out within relockAhead of now. A
// point's own lock, set at its commit, runs to its own expiry; without
// this, a full could be deleted while the logs that need it are locked.
// It runs with each garbage collection, under its lock.
func (s *Service) relockChains(ctx context.Context, now time.Time) error {
	locked, err := s.lockedVaults(ctx)
	if err != nil || len(locked) == 0 {
		return err
	}
	byDB := map[string][]policy.Point{}
	in := map[string]string{} // a point's vault
	err = s.rps.List(ctx, "", func() proto.Message { return &cofferv1.RecoveryPoint{} }, func(key string, m proto.Message) error {
		rp := m.(*cofferv1.RecoveryPoint)
		pt, err := policy.PointFromRecord(rp)
		if err != nil || rp.GetManifest() != rp.GetId() {
			// not understood: the scheduler keeps it, and it stays as
			// locked as it is
			return nil
		}
		// the whole chain, whatever vaults it is in, says how long each
		// point is needed
		db := catalog.Key(rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase())
		byDB[db] = append(byDB[db], pt)
		in[pt.ID] = vaultName(rp.GetVault())
		return nil
	})
	if err != nil {
		return fmt.Errorf("relock chains: %w", err)
	}
	if s.gc.relocked == nil || len(s.gc.relocked) > maxRelocked {
		s.gc.relocked = map[string]time.Time{}
	}
	n := 0
	for _, points := range byDB {
		kept := policy.KeptUntil(points)
		for _, pt := range points {
			until, ok := kept[pt.ID]
			lock := pt.Expires
			if l := s.gc.relocked[pt.ID]; l.After(lock) {
				lock = l
			}
			if !ok || !until.After(lock) || lock.After(now.Add(relockAhead)) || !locked[in[pt.ID]] {
				continue
			}
			v, err := s.vaultOf(ctx, in[pt.ID])
			if err == nil {
				err = v.RetainManifest(ctx, pt.ID, until)
			}
			if errors.Is(err, blob.ErrNotExist) {
				continue // expired meanwhile
			}
			if err != nil {
				return fmt.Errorf("relock chains: %w", err)
			}
			s.gc.relocked[pt.ID] = until
			n++
		}
	}
	if n > 0 {
		s.log.InfoContext(ctx, "locks of recovery points that later ones depend on extended", slog.Int("recovery_points", n))
	}
	return nil
}

// lockedVaults names the immutable vaults ("": the default), which lock
// what recovery points need. A named vault is immutable if its record
// says so; one that cannot be opened is left to the commits that use it.
func (s *Service) lockedVaults(ctx context.Context) (map[string]bool, error) {
	locked := map[string]bool{}
	if s.vault.ObjectLock() != "" {
		locked[""] = true
	}
	err := s.vaultRecords.List(ctx, "", func() proto.Message { return &cofferv1.VaultRecord{} }, func(_ string, m proto.Message) error {
		if r := m.(*cofferv1.VaultRecord); r.GetObjectLock() != "" {
			locked[r.GetName()] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relock chains: list vaults: %w", err)
	}
	return locked, nil
}
