package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// policies returns every policy: the stored ones and the built-in default.
func (s *Service) policies(r *http.Request) ([]policy.Policy, error) {
	out := []policy.Policy{}
	haveDefault := false
	err := s.cat.Bucket(cofferv1.BucketPolicies).List(r.Context(), "", func() proto.Message { return &cofferv1.PolicyRecord{} },
		func(_ string, m proto.Message) error {
			var p policy.Policy
			if err := json.Unmarshal([]byte(m.(*cofferv1.PolicyRecord).GetJson()), &p); err != nil {
				return nil // the scheduler never stores one that does not parse
			}
			haveDefault = haveDefault || p.Name == policy.DefaultName
			out = append(out, p)
			return nil
		})
	if !haveDefault {
		out = append(out, policy.Default())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, err
}

func (s *Service) listPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := s.policies(r)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Service) getPolicy(w http.ResponseWriter, r *http.Request) {
	ps, err := s.policies(r)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	for _, p := range ps {
		if p.Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no policy %q (coffer policy list)", r.PathValue("name"))
}

// putPolicy creates or changes a policy. It is validated here so the user
// learns at once what is wrong; the change takes effect at each
// database's next due time.
func (s *Service) putPolicy(w http.ResponseWriter, r *http.Request) {
	var p policy.Policy
	if !readJSON(w, r, &p) {
		return
	}
	if p.Name == "" {
		p.Name = r.PathValue("name")
	}
	if p.Name != r.PathValue("name") {
		writeError(w, http.StatusBadRequest, "the policy is named %q but the address names %q", p.Name, r.PathValue("name"))
		return
	}
	if err := p.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid policy %q:\n%s", p.Name, err)
		return
	}
	if p.Copy != nil {
		if _, status, err := s.checkVault(r.Context(), p.Copy.Vault); err != nil {
			writeError(w, status, "invalid policy %q: copy.vault: %v", p.Name, err)
			return
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	now := s.cfg.Now()
	ev := &cofferv1.PolicyPutRequested{Meta: event.Meta(event.ID("policy-put", p.Name, now.String()), "", now),
		Policy: &cofferv1.PolicyRecord{Name: p.Name, Json: string(b), UpdatedAt: timestamppb.New(now)}}
	if err := s.publish(r.Context(), cofferv1.SubjectPolicyPutRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, p)
}

// deletePolicy deletes a policy that no protected database uses.
func (s *Service) deletePolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == policy.DefaultName {
		writeError(w, http.StatusBadRequest, "the default policy cannot be deleted; change it instead")
		return
	}
	var users []string
	err := s.cat.Bucket(cofferv1.BucketProtected).List(r.Context(), "", func() proto.Message { return &cofferv1.ProtectedItem{} },
		func(_ string, m proto.Message) error {
			it := m.(*cofferv1.ProtectedItem)
			if it.GetPolicy() == name && it.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
				users = append(users, it.GetDatabase().GetInstance()+"/"+it.GetDatabase().GetDatabase())
			}
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if len(users) > 0 {
		writeError(w, http.StatusConflict, "policy %q is in use by %s: protect them with another policy first", name, strings.Join(users, ", "))
		return
	}
	var rec cofferv1.PolicyRecord
	if _, err := s.cat.Bucket(cofferv1.BucketPolicies).Get(r.Context(), catalog.Key(name), &rec); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no policy %q", name)
			return
		}
		s.unavailable(w, r, err)
		return
	}
	now := s.cfg.Now()
	ev := &cofferv1.PolicyDeleteRequested{Meta: event.Meta(event.ID("policy-delete", name, now.String()), "", now), Name: name}
	if err := s.publish(r.Context(), cofferv1.SubjectPolicyDeleteRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"deleted": fmt.Sprint(name)})
}
