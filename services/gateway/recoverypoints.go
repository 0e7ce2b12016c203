package gateway

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// deleteRecoveryPoints soft-deletes recovery points: POST
// /api/v1/recovery-points/delete with a RecoveryPointsRequest, or DELETE
// /api/v1/recovery-points/{id}[?with_dependents=true] for one.
func (s *Service) deleteRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	var req RecoveryPointsRequest
	if id := r.PathValue("id"); id != "" {
		deps, err := strconv.ParseBool(cmp.Or(r.URL.Query().Get("with_dependents"), "false"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "with_dependents=%q: want true or false", r.URL.Query().Get("with_dependents"))
			return
		}
		req = RecoveryPointsRequest{RecoveryPoints: []string{id}, WithDependents: deps}
	} else if !readJSON(w, r, &req) {
		return
	}
	s.changeRecoveryPoints(w, r, req, true)
}

// undeleteRecoveryPoints brings soft-deleted recovery points back: POST
// /api/v1/recovery-points/undelete with a RecoveryPointsRequest.
func (s *Service) undeleteRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	var req RecoveryPointsRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.WithDependents {
		writeError(w, http.StatusBadRequest, "with_dependents is for a delete: an undelete brings back the deleted points the named ones need by itself")
		return
	}
	s.changeRecoveryPoints(w, r, req, false)
}

// changeRecoveryPoints finds the database of each point the request names
// and asks the committer, which owns the catalog, for the delete (or
// undelete) of each database's points: one job each. What the catalog
// shows now is checked here, before anything is asked; the committer
// checks the rest (the points that depend on those deleted, the
// soft-delete window) and records a refusal as the job's failure.
func (s *Service) changeRecoveryPoints(w http.ResponseWriter, r *http.Request, req RecoveryPointsRequest, del bool) {
	if len(req.RecoveryPoints) == 0 {
		writeError(w, http.StatusBadRequest, "name at least one recovery point (coffer rp list INSTANCE/DATABASE)")
		return
	}
	all, err := s.recoveryPoints(r.Context(), "", "", true)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	byID := make(map[string]*cofferv1.RecoveryPoint, len(all))
	for _, rp := range all {
		byID[rp.GetId()] = rp
	}
	var dbs []string // in the order the request names them
	ids := map[string][]string{}
	refs := map[string]*cofferv1.DatabaseRef{}
	var unknown, wrong []string
	for _, id := range req.RecoveryPoints {
		rp := byID[id]
		switch {
		case rp == nil:
			unknown = append(unknown, strconv.Quote(id))
			continue
		case del && rp.GetDeletedAt() != nil:
			wrong = append(wrong, fmt.Sprintf("recovery point %s is already deleted (%s)", id, policy.DeletedNote(rp)))
			continue
		case !del && rp.GetDeletedAt() == nil:
			wrong = append(wrong, fmt.Sprintf("recovery point %s is not deleted", id))
			continue
		}
		db := rp.GetDatabase().GetInstance() + "/" + rp.GetDatabase().GetDatabase()
		if !slices.Contains(ids[db], id) {
			ids[db] = append(ids[db], id)
		}
		if refs[db] == nil {
			refs[db] = rp.GetDatabase()
			dbs = append(dbs, db)
		}
	}
	if len(unknown) > 0 {
		msg := fmt.Sprintf("no recovery point %s (coffer rp list INSTANCE/DATABASE)", strings.Join(unknown, ", "))
		if !del {
			msg += "; a deleted point is gone for good once its soft-delete window ended and garbage collection ran"
		}
		writeError(w, http.StatusNotFound, "%s", msg)
		return
	}
	if len(wrong) > 0 {
		writeError(w, http.StatusConflict, "%s", strings.Join(wrong, "; "))
		return
	}
	now := s.cfg.Now()
	by := requester(r, req.By)
	var acc Accepted
	for _, db := range dbs {
		jobID := event.NewJobID(now)
		var err error
		if del {
			ev := &cofferv1.RecoveryPointsDeleteRequested{Meta: event.Meta(event.ID("delete", jobID), jobID, now), Database: refs[db],
				RecoveryPoints: ids[db], WithDependents: req.WithDependents, RequestedBy: by}
			err = s.publish(r.Context(), cofferv1.SubjectRecoveryPointsDelete, ev, ev.Meta.EventId)
		} else {
			ev := &cofferv1.RecoveryPointsUndeleteRequested{Meta: event.Meta(event.ID("undelete", jobID), jobID, now), Database: refs[db],
				RecoveryPoints: ids[db], RequestedBy: by}
			err = s.publish(r.Context(), cofferv1.SubjectRecoveryPointsUndelete, ev, ev.Meta.EventId)
		}
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		s.cfg.Logger.InfoContext(r.Context(), "recovery points change requested", "job_id", jobID, "delete", del, "database", db,
			"recovery_points", strings.Join(ids[db], ","), "by", by)
		acc.Jobs = append(acc.Jobs, jobID)
		acc.Plan = append(acc.Plan, ids[db]...)
	}
	acc.JobID = acc.Jobs[0]
	writeJSON(w, http.StatusAccepted, acc)
}

// requester names who asked for a change, for the record: the signed-in
// user, or else who the request says (the CLI sends its user), from the
// caller's address.
func requester(r *http.Request, by string) string {
	if p := principal(r); p.Via == "token" || p.Via == "session" {
		by = p.Name // a signed-in user is who they are, whatever the request says
	}
	by = strings.TrimSpace(by)
	if len(by) > 128 {
		by = by[:128]
	}
	if by == "" {
		by = "the API"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if host == "" {
		return by
	}
	return by + " from " + host
}
