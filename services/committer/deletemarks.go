package committer

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// A soft-deleted recovery point's mark (who deleted it, when, and until
// when it can be brought back) lives in its record, and also in each
// vault that holds the point, as a catalog copy (vault.PutCatalogCopy)
// named deleteMarkPrefix + its id: a RecoveryPoint in protojson holding
// only those fields. A rebuild of a lost catalog reads the marks, so that
// a point a person deleted comes back deleted, with the same window,
// rather than restorable as if it had never been deleted.
const deleteMarkPrefix = "deleted."

// pointVaults names the vaults that hold rp: its own, and those of its
// committed copies.
func pointVaults(rp *cofferv1.RecoveryPoint) []string {
	out := []string{vaultName(rp.GetVault())}
	for _, c := range rp.GetCopies() {
		if c.GetCommittedAt() != nil {
			out = append(out, vaultName(c.GetVault()))
		}
	}
	return out
}

// putDeleteMark writes rp's soft-delete mark into every vault that holds
// it.
func (s *Service) putDeleteMark(ctx context.Context, rp *cofferv1.RecoveryPoint) error {
	mark := &cofferv1.RecoveryPoint{Id: rp.GetId(), DeletedAt: rp.GetDeletedAt(), DeletedBy: rp.GetDeletedBy(),
		PurgeAfter: rp.GetPurgeAfter(), DeleteJobId: rp.GetDeleteJobId()}
	data, err := protojson.Marshal(mark)
	if err != nil {
		return fmt.Errorf("encode the delete mark of %s: %w", rp.GetId(), err)
	}
	return s.eachPointVault(ctx, rp, func(v *vault.Vault) error {
		return v.PutCatalogCopy(ctx, deleteMarkPrefix+rp.GetId(), data)
	})
}

// dropDeleteMark deletes rp's soft-delete mark from every vault that
// holds it; a mark that is not there is no error.
func (s *Service) dropDeleteMark(ctx context.Context, rp *cofferv1.RecoveryPoint) error {
	return s.eachPointVault(ctx, rp, func(v *vault.Vault) error {
		return v.DeleteCatalogCopy(ctx, deleteMarkPrefix+rp.GetId())
	})
}

func (s *Service) eachPointVault(ctx context.Context, rp *cofferv1.RecoveryPoint, fn func(*vault.Vault) error) error {
	for _, name := range pointVaults(rp) {
		v, err := s.vaultOf(ctx, name)
		if err == nil {
			err = fn(v)
		}
		if err != nil {
			return fmt.Errorf("delete mark of recovery point %s in vault %s: %w", rp.GetId(), vaultLabel(name), err)
		}
	}
	return nil
}

// deleteMarks reads the soft-delete marks v holds, by recovery point id.
// A mark that cannot be read is left out, and named in unreadable.
func deleteMarks(ctx context.Context, v *vault.Vault) (marks map[string]*cofferv1.RecoveryPoint, unreadable []Unreadable, err error) {
	marks = map[string]*cofferv1.RecoveryPoint{}
	err = v.ListCatalogCopies(ctx, deleteMarkPrefix, func(name string) error {
		data, err := v.GetCatalogCopy(ctx, name)
		if errors.Is(err, blob.ErrNotExist) {
			return nil // undeleted or purged meanwhile
		}
		mark := &cofferv1.RecoveryPoint{}
		if err == nil {
			err = (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, mark)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			unreadable = append(unreadable, Unreadable{Manifest: name, Err: err})
			return nil
		}
		marks[mark.GetId()] = mark
		return nil
	})
	return marks, unreadable, err
}

// applyDeleteMark marks rp deleted as mark says.
func applyDeleteMark(rp, mark *cofferv1.RecoveryPoint) {
	rp.DeletedAt, rp.DeletedBy = proto.CloneOf(mark.GetDeletedAt()), mark.GetDeletedBy()
	rp.PurgeAfter, rp.DeleteJobId = proto.CloneOf(mark.GetPurgeAfter()), mark.GetDeleteJobId()
}
