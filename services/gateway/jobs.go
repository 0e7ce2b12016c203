package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// cancellable are the kinds of job a person may cancel: those a
// backup-streamer runs, which watches for the cancel.
var cancellable = map[cofferv1.JobKind]bool{cofferv1.JobKind_JOB_KIND_BACKUP: true, cofferv1.JobKind_JOB_KIND_RESTORE: true,
	cofferv1.JobKind_JOB_KIND_VERIFY: true, cofferv1.JobKind_JOB_KIND_COPY: true}

// cancelJob asks for the cancel of a queued or running job: POST
// /api/v1/jobs/{id}/cancel. The committer cancels a queued job at once;
// the backup-streamer running a job stops it, and it ends CANCELLED (a
// backup commits nothing). 404 for a job not recorded, 409 for one that
// ended, cannot be cancelled, or can no longer be (an overwrite restore
// that began changing the database).
func (s *Service) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, ok := s.readJob(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	job := jobFromProto(j)
	switch {
	case job.Done():
		writeError(w, http.StatusConflict, "job %s already ended: %s", id, job.State)
		return
	case !cancellable[j.GetKind()]:
		writeError(w, http.StatusConflict, "a %s job cannot be cancelled: only backup, restore, verify and copy jobs can", job.Kind)
		return
	case j.GetNoCancel() != "":
		writeError(w, http.StatusConflict, "job %s can no longer be cancelled: %s", id, j.GetNoCancel())
		return
	}
	now := s.cfg.Now()
	by := requester(r, "")
	ev := &cofferv1.JobCancelRequested{Meta: event.Meta(event.ID("cancel", id), id, now), By: by}
	if err := s.publish(r.Context(), cofferv1.SubjectJobCancel, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.cfg.Logger.InfoContext(r.Context(), "job cancel requested", "job_id", id, "by", by)
	writeJSON(w, http.StatusAccepted, Accepted{JobID: id})
}

// readJob reads the job the request's path names ({id}); when it cannot,
// it answers (404 for a job not recorded) and reports false.
func (s *Service) readJob(w http.ResponseWriter, r *http.Request) (*cofferv1.Job, bool) {
	id := r.PathValue("id")
	j := &cofferv1.Job{}
	if _, err := s.cat.Bucket(cofferv1.BucketJobs).Get(r.Context(), catalog.Key(id), j); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no job %q (it may not have been recorded yet)", id)
			return nil, false
		}
		s.unavailable(w, r, err)
		return nil, false
	}
	return j, true
}

// jobDetail is a job with its steps and log lines, as of now (the
// duration of a step still running).
func jobDetail(j *cofferv1.Job, now time.Time) Job {
	out := jobFromProto(j)
	for _, st := range j.GetSteps() {
		step := JobStep{Name: st.GetName(), Began: ts(st.GetBeganAt()), Ended: ts(st.GetEndedAt()), Outcome: st.GetOutcome()}
		if step.Began != nil {
			end := now
			if step.Ended != nil {
				end = *step.Ended
			}
			step.Seconds = max(0, end.Sub(*step.Began).Seconds())
		}
		out.Steps = append(out.Steps, step)
	}
	for _, l := range j.GetLog() {
		out.Log = append(out.Log, JobLogLine{Time: ts(l.GetTime()), Level: l.GetLevel(), Service: l.GetService(), Message: l.GetMessage()})
	}
	return out
}
