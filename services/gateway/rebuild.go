package gateway

import (
	"net/http"

	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// RebuildRequest asks for the catalog's recovery points to be rebuilt
// from the vault (POST /api/v1/catalog/rebuild). The rebuild merges: it
// records what the catalog lacks and never replaces a record.
type RebuildRequest struct {
	// Prune also deletes the records whose manifest is not in the vault.
	Prune bool `json:"prune,omitempty"`
}

// rebuild hands a rebuild of the catalog to the committer, which owns the
// recovery points and reads the vault, as a job the caller follows.
func (s *Service) rebuild(w http.ResponseWriter, r *http.Request) {
	var req RebuildRequest
	if !readJSON(w, r, &req) {
		return
	}
	now := s.cfg.Now()
	jobID := event.NewJobID(now)
	detail := "rebuild the catalog's recovery points from the vault"
	if req.Prune {
		detail += ", deleting the records whose manifest is not in it"
	}
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now), Kind: cofferv1.JobKind_JOB_KIND_REBUILD, Detail: detail}
	if err := s.publish(r.Context(), cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	ev := &cofferv1.CatalogRebuildRequested{Meta: event.Meta(event.ID("rebuild", jobID), jobID, now), Prune: req.Prune}
	if err := s.publish(r.Context(), cofferv1.SubjectCatalogRebuild, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.cfg.Logger.InfoContext(r.Context(), "catalog rebuild requested", "job_id", jobID, "prune", req.Prune)
	writeJSON(w, http.StatusAccepted, Accepted{JobID: jobID})
}
