package committer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// policiesCopy names the vault's copy of the policies bucket
// (vault.PutCatalogCopy): a PolicySet in protojson.
const policiesCopy = "policies"

// keepPolicyCopy keeps the vault's copy of the policies bucket until ctx
// ends, so that a rebuild of a lost catalog puts the policies back. At
// start it adds to the copy the policies it lacks or holds older, and
// removes none: after the catalog was lost, the copy is all that is left
// of them. From then on it follows every change, deletions included. A
// failed write is logged; the next change writes the copy again.
func (s *Service) keepPolicyCopy(ctx context.Context) {
	updates, err := s.policies.Watch(ctx, "")
	if err != nil {
		s.log.ErrorContext(ctx, "the vault's copy of the policies is not kept", slog.Any("error", err))
		return
	}
	synced := false
	current := map[string]*cofferv1.PolicyRecord{}
	for u := range updates {
		var change func(set map[string]*cofferv1.PolicyRecord) bool
		var rec cofferv1.PolicyRecord
		switch {
		case u.Synced:
			synced = true
			change = func(set map[string]*cofferv1.PolicyRecord) bool {
				changed := false
				for name, r := range current {
					if old, ok := set[name]; !ok || old.GetUpdatedAt().AsTime().Before(r.GetUpdatedAt().AsTime()) {
						set[name], changed = r, true
					}
				}
				return changed
			}
		case u.Deleted:
			parts, err := catalog.SplitKey(u.Key)
			if err != nil || len(parts) != 1 {
				continue
			}
			change = func(set map[string]*cofferv1.PolicyRecord) bool {
				_, ok := set[parts[0]]
				delete(set, parts[0])
				return ok
			}
		case u.Decode(&rec) != nil || rec.GetName() == "":
			continue
		case !synced:
			current[rec.GetName()] = &rec
			continue
		default:
			change = func(set map[string]*cofferv1.PolicyRecord) bool {
				if old, ok := set[rec.GetName()]; ok && proto.Equal(old, &rec) {
					return false
				}
				set[rec.GetName()] = &rec
				return true
			}
		}
		if !synced {
			continue
		}
		if err := s.updatePolicyCopy(ctx, change); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "the vault's copy of the policies is not up to date; the next change of a policy writes it again", slog.Any("error", err))
		}
	}
}

// updatePolicyCopy reads the vault's copy of the policies, lets change
// change it, and writes it back when it did. A copy that cannot be
// authenticated is replaced.
func (s *Service) updatePolicyCopy(ctx context.Context, change func(map[string]*cofferv1.PolicyRecord) bool) error {
	set, err := s.policyCopy(ctx)
	if err != nil && !errors.Is(err, blob.ErrNotExist) {
		s.log.WarnContext(ctx, "the vault's copy of the policies is unreadable; writing it again", slog.Any("error", err))
	}
	byName := map[string]*cofferv1.PolicyRecord{}
	for _, p := range set.GetPolicies() {
		byName[p.GetName()] = p
	}
	if !change(byName) {
		return nil
	}
	out := &cofferv1.PolicySet{}
	for _, p := range byName {
		out.Policies = append(out.Policies, p)
	}
	data, err := protojson.Marshal(out)
	if err != nil {
		return err
	}
	return s.vault.PutCatalogCopy(ctx, policiesCopy, data)
}

// policyCopy reads the vault's copy of the policies.
func (s *Service) policyCopy(ctx context.Context) (*cofferv1.PolicySet, error) {
	data, err := s.vault.GetCatalogCopy(ctx, policiesCopy)
	if err != nil {
		return nil, err
	}
	set := &cofferv1.PolicySet{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, set); err != nil {
		return nil, fmt.Errorf("%w: decode the vault's copy of the policies: %v", vault.ErrCorrupt, err)
	}
	return set, nil
}

// restorePolicies asks the scheduler, which owns the policies, to store
// each policy of the vault's copy that the catalog lacks, and only if it
// still lacks it then, so a newer policy is never replaced. It returns the
// names it asked for.
func (s *Service) restorePolicies(ctx context.Context, jid string) ([]string, error) {
	set, err := s.policyCopy(ctx)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil // a vault of a coffer older than the copy, or never a policy
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range set.GetPolicies() {
		var cur cofferv1.PolicyRecord
		_, err := s.policies.Get(ctx, catalog.Key(p.GetName()), &cur)
		if err == nil {
			continue
		}
		if !errors.Is(err, catalog.ErrNotFound) {
			return nil, err
		}
		now := s.cfg.Now()
		ev := &cofferv1.PolicyPutRequested{Meta: event.Meta(event.ID("rebuild-policy", jid, p.GetName()), "", now), Policy: p, IfAbsent: true}
		if err := s.bus.Publish(ctx, cofferv1.SubjectPolicyPutRequested, ev, ev.Meta.EventId); err != nil {
			return nil, fmt.Errorf("ask for policy %s: %w", p.GetName(), err)
		}
		names = append(names, p.GetName())
	}
	return names, nil
}
