package committer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// assignRetention gives a recovery point its expiry and grandfather-
// father-son tags from the policy in force now, when it is taken: a later
// change of the policy does not change them.
func (s *Service) assignRetention(ctx context.Context, rp *cofferv1.RecoveryPoint) error {
	db := rp.GetDatabase()
	name := policy.DefaultName
	var item cofferv1.ProtectedItem
	if _, err := s.protected.Get(ctx, catalog.Key(db.GetInstance(), db.GetDatabase()), &item); err == nil && item.GetPolicy() != "" {
		name = item.GetPolicy()
	} else if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	p := policy.Default()
	var rec cofferv1.PolicyRecord
	if _, err := s.policies.Get(ctx, catalog.Key(name), &rec); err == nil {
		if err := json.Unmarshal([]byte(rec.GetJson()), &p); err != nil {
			return fmt.Errorf("policy %q: %w", name, err)
		}
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	pt, err := policy.PointFromRecord(rp)
	if err != nil {
		return reject("%v", err)
	}
	// only a full's tags depend on earlier points (the first full of a
	// week, month or year); listing them for every log would make each
	// commit cost as much as the catalog is large
	var earlier []policy.Point
	if pt.Kind == policy.Full || pt.Kind == policy.CopyOnlyFull {
		err := s.rps.List(ctx, catalog.Key(db.GetInstance(), db.GetDatabase()), func() proto.Message { return &cofferv1.RecoveryPoint{} },
			func(_ string, m proto.Message) error {
				if p, err := policy.PointFromRecord(m.(*cofferv1.RecoveryPoint)); err == nil && p.ID != rp.GetId() {
					earlier = append(earlier, p)
				}
				return nil
			})
		if err != nil {
			return err
		}
	}
	if pt.Taken.IsZero() {
		pt.Taken = rp.GetCommittedAt().AsTime() // no finish time reported
	}
	expires, tags := p.Expiry(pt, earlier)
	rp.ExpiresAt, rp.Tags, rp.Policy = timestamppb.New(expires), tags, p.Name
	planCopy(&p, rp, pt.Taken)
	return nil
}
