package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// lookupPolicy returns the named policy: a stored one, or the built-in
// default. ok is false when there is none.
func (s *Service) lookupPolicy(ctx context.Context, name string) (*policy.Policy, bool, error) {
	if name == "" {
		name = policy.DefaultName
	}
	var rec cofferv1.PolicyRecord
	_, err := s.policies.Get(ctx, catalog.Key(name), &rec)
	if errors.Is(err, catalog.ErrNotFound) {
		p, ok := unstoredPolicy(name)
		return p, ok, nil
	}
	if err != nil {
		return nil, false, err
	}
	p, err := decodePolicy(name, &rec)
	if err != nil {
		return nil, false, err
	}
	return p, true, nil
}

// unstoredPolicy is the policy called name when none is stored: the
// built-in default for the default name, none (ok false) for any other.
func unstoredPolicy(name string) (p *policy.Policy, ok bool) {
	if name != policy.DefaultName {
		return nil, false
	}
	d := policy.Default()
	return &d, true
}

// decodePolicy reads the stored record of the policy called name.
func decodePolicy(name string, rec *cofferv1.PolicyRecord) (*policy.Policy, error) {
	var p policy.Policy
	if err := json.Unmarshal([]byte(rec.GetJson()), &p); err != nil {
		return nil, fmt.Errorf("stored policy %q is malformed: %w", name, err)
	}
	return &p, nil
}

// putPolicy stores a policy after validating it (with if_absent, only
// when none of its name is stored). A change takes effect at
// the next due time: schedules keep their next times, and compute the ones
// after from the new policy.
func (s *Service) putPolicy(ctx context.Context, ev *cofferv1.PolicyPutRequested) error {
	rec := ev.GetPolicy()
	var p policy.Policy
	if err := json.Unmarshal([]byte(rec.GetJson()), &p); err != nil {
		s.cfg.Logger.WarnContext(ctx, "policy refused", "policy", rec.GetName(), "err", err)
		return nil // the gateway validated it; nothing to retry
	}
	if err := p.Validate(); err != nil || p.Name != rec.GetName() {
		s.cfg.Logger.WarnContext(ctx, "policy refused", "policy", rec.GetName(), "err", err)
		return nil
	}
	var err error
	if ev.GetIfAbsent() {
		// a rebuild's copy from the vault: never over a policy stored since
		if _, err = s.policies.Create(ctx, catalog.Key(p.Name), rec); errors.Is(err, catalog.ErrExists) {
			return nil
		}
	} else {
		_, err = s.policies.Put(ctx, catalog.Key(p.Name), rec)
	}
	if err == nil {
		s.cfg.Logger.InfoContext(ctx, "policy stored", "policy", p.Name)
	}
	return err
}

// deletePolicy deletes a policy no protected database uses.
func (s *Service) deletePolicy(ctx context.Context, ev *cofferv1.PolicyDeleteRequested) error {
	inUse, err := s.policyInUse(ctx, ev.GetName())
	if err != nil {
		return err
	}
	if inUse != "" {
		s.cfg.Logger.WarnContext(ctx, "policy in use; not deleted", "policy", ev.GetName(), "database", inUse)
		return nil
	}
	return s.policies.Delete(ctx, catalog.Key(ev.GetName()))
}

// policyInUse names a protected database using the policy, or "".
func (s *Service) policyInUse(ctx context.Context, name string) (string, error) {
	var user string
	err := s.protected.List(ctx, "", func() proto.Message { return &cofferv1.ProtectedItem{} }, func(_ string, m proto.Message) error {
		it := m.(*cofferv1.ProtectedItem)
		if it.GetPolicy() == name && it.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED && user == "" {
			user = it.GetDatabase().GetInstance() + "/" + it.GetDatabase().GetDatabase()
		}
		return nil
	})
	return user, err
}
