package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// protectMany protects every database req.Databases names, in one
// request: each is INSTANCE/DATABASE or a pattern. Every name is checked
// before any protection is asked for: one that names nothing refuses the
// whole request.
func (s *Service) protectMany(w http.ResponseWriter, r *http.Request, req DatabaseRequest) {
	refs, ok := s.resolveManyOrAnswer(w, r, req.Databases, req.Instance != "" || req.Database != "", "protected")
	if !ok {
		return
	}
	vault, status, err := s.checkVault(r.Context(), req.Vault)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}
	now := s.cfg.Now()
	out := DatabaseRequest{Policy: req.Policy, Vault: vault, Protected: []DatabaseRequest{}}
	for i, ref := range refs {
		ev := &cofferv1.ProtectionRequested{Meta: event.Meta(event.ID("protect", ref.Instance, ref.Database, now.String()), "", now),
			Database: ref, Policy: req.Policy, RequestedBy: "user", Attempt: 1, Vault: vault}
		if err := s.publish(r.Context(), cofferv1.SubjectProtectionRequested, ev, ev.Meta.EventId); err != nil {
			s.unavailable(w, r, fmt.Errorf("protection of %d of %d databases requested, then: %w", i, len(refs), err))
			return
		}
		out.Protected = append(out.Protected, DatabaseRequest{Instance: ref.Instance, Database: ref.Database, Policy: req.Policy, Vault: vault})
	}
	s.cfg.Logger.InfoContext(r.Context(), "protection requested", "databases", len(refs), "policy", req.Policy)
	writeJSON(w, http.StatusAccepted, out)
}

// unprotectMany stops protecting every database req.Databases names, as
// protectMany names them: every name is checked before anything is asked
// for. With DeleteData, each database's recovery points are deleted too
// (soft), a job each.
func (s *Service) unprotectMany(w http.ResponseWriter, r *http.Request, req DatabaseRequest) {
	refs, ok := s.resolveManyOrAnswer(w, r, req.Databases, req.Instance != "" || req.Database != "", "unprotected")
	if !ok {
		return
	}
	out := DatabaseRequest{DeleteData: req.DeleteData, Unprotected: []DatabaseRequest{}}
	for i, ref := range refs {
		done, err := s.requestUnprotect(r, ref, req.DeleteData, req.By)
		if err != nil {
			s.unavailable(w, r, fmt.Errorf("unprotection of %d of %d databases requested, then: %w", i, len(refs), err))
			return
		}
		out.Unprotected = append(out.Unprotected, done)
	}
	s.cfg.Logger.InfoContext(r.Context(), "unprotection requested", "databases", len(refs), "delete_data", req.DeleteData)
	writeJSON(w, http.StatusAccepted, out)
}

// backupMany asks for an on-demand backup of type typ of every database
// req.Databases names, as protectMany names them: every name is checked
// before any backup is asked for. The answer's Jobs are one per database,
// in the order of its Databases.
func (s *Service) backupMany(w http.ResponseWriter, r *http.Request, req BackupRequest, typ cofferv1.BackupType) {
	refs, ok := s.resolveManyOrAnswer(w, r, req.Databases, req.Instance != "" || req.Database != "", "backed up")
	if !ok {
		return
	}
	out := Accepted{Jobs: []string{}, Databases: []string{}}
	for i, ref := range refs {
		jobID, err := s.requestBackup(r, ref, typ)
		if err != nil {
			s.unavailable(w, r, fmt.Errorf("backups of %d of %d databases requested (jobs %s), then: %w", i, len(refs), strings.Join(out.Jobs, ", "), err))
			return
		}
		out.Jobs = append(out.Jobs, jobID)
		out.Databases = append(out.Databases, ref.Instance+"/"+ref.Database)
	}
	out.JobID = out.Jobs[0]
	writeJSON(w, http.StatusAccepted, out)
}

// resolveManyOrAnswer resolves names as resolveMany does, or answers the
// request with why it cannot: a request that names one database too (one)
// is refused. done says what would have been done ("protected").
func (s *Service) resolveManyOrAnswer(w http.ResponseWriter, r *http.Request, names []string, one bool, done string) ([]*cofferv1.DatabaseRef, bool) {
	if one {
		writeError(w, http.StatusBadRequest, "give instance and database, or databases, not both")
		return nil, false
	}
	refs, status, err := s.resolveMany(r, names)
	switch {
	case err == nil:
		return refs, true
	case status == http.StatusServiceUnavailable:
		s.unavailable(w, r, err)
	default:
		writeError(w, status, "nothing %s: %v", done, err)
	}
	return nil, false
}

// isPattern reports whether a name holds a pattern's special characters.
func isPattern(name string) bool { return strings.ContainsAny(name, `*?[\`) }

// resolveMany finds the databases names name, in their order, each once:
// INSTANCE/DATABASE as resolve finds it, or a pattern (path.Match's: *
// matches any run of characters but '/', ? one, [a-z] a class) matched
// against every INSTANCE/DATABASE of the inventory, ignoring case. A name
// that is an existing database is that database, even when it holds a
// pattern's characters.
func (s *Service) resolveMany(r *http.Request, names []string) ([]*cofferv1.DatabaseRef, int, error) {
	var inventory []*cofferv1.DatabaseRef
	listed := false
	seen := map[string]bool{}
	var out []*cofferv1.DatabaseRef
	var problems []string
	status := http.StatusNotFound
	add := func(ref *cofferv1.DatabaseRef) {
		if k := catalog.Key(ref.Instance, ref.Database); !seen[k] {
			seen[k] = true
			out = append(out, ref)
		}
	}
	for _, name := range names {
		instance, database, ok := strings.Cut(name, "/")
		if !isPattern(name) {
			if !ok || instance == "" || database == "" {
				problems = append(problems, fmt.Sprintf("name a database as INSTANCE/DATABASE, got %s", strconv.Quote(name)))
				status = http.StatusBadRequest
				continue
			}
			ref, st, err := s.resolve(r.Context(), instance, database)
			if st == http.StatusServiceUnavailable {
				return nil, st, err
			}
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			add(ref)
			continue
		}
		// a database may be named like a pattern ("[", "a*b"): that
		// database, if it exists, rather than what the pattern matches
		if ok && instance != "" && database != "" {
			ref, st, err := s.resolve(r.Context(), instance, database)
			if st == http.StatusServiceUnavailable {
				return nil, st, err
			}
			if err == nil {
				add(ref)
				continue
			}
		}
		if _, err := path.Match(name, ""); err != nil {
			problems = append(problems, fmt.Sprintf("pattern %s: %v", strconv.Quote(name), err))
			status = http.StatusBadRequest
			continue
		}
		if !listed {
			var err error
			if inventory, err = s.inventory(r); err != nil {
				return nil, http.StatusServiceUnavailable, err
			}
			listed = true
		}
		matched := 0
		for _, ref := range inventory {
			full := ref.Instance + "/" + ref.Database
			if m, _ := path.Match(strings.ToLower(name), strings.ToLower(full)); m || full == name {
				add(ref)
				matched++
			}
		}
		if matched == 0 {
			problems = append(problems, fmt.Sprintf("pattern %s matches no database (coffer db list)", strconv.Quote(name)))
		}
	}
	if len(problems) > 0 {
		return nil, status, errors.New(strings.Join(problems, "; "))
	}
	if len(out) == 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("name at least one database")
	}
	return out, 0, nil
}

// inventory is every database of every instance, sorted.
func (s *Service) inventory(r *http.Request) ([]*cofferv1.DatabaseRef, error) {
	var out []*cofferv1.DatabaseRef
	err := s.cat.Bucket(cofferv1.BucketInventory).List(r.Context(), "", func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(key string, m proto.Message) error {
			parts, err := catalog.SplitKey(key)
			if err == nil && len(parts) == 2 {
				out = append(out, &cofferv1.DatabaseRef{Instance: parts[0], Database: m.(*cofferv1.DatabaseInfo).GetName()})
			}
			return nil
		})
	sort.Slice(out, func(a, b int) bool {
		if out[a].Instance != out[b].Instance {
			return out[a].Instance < out[b].Instance
		}
		return out[a].Database < out[b].Database
	})
	return out, err
}
