package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// URLCheckWait bounds the wait for a backup-streamer's answer to a URL
// check: longer than the streamer gives the check itself (90 s), so that
// even a check that ran out of time is answered with what happened.
const URLCheckWait = 2 * time.Minute

// checkURL asks one backup-streamer whether the instance's jobs can run
// in the mode they use: in URL mode, whether SQL Server reaches and
// trusts the streamer's S3 endpoint. A check that finds a problem is
// still a 200: its answer says what to fix.
func (s *Service) checkURL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.registered(w, r, name) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), URLCheckWait)
	defer cancel()
	var res cofferv1.URLCheckResult
	err := s.bus.Request(ctx, cofferv1.SubjectURLCheck, &cofferv1.URLCheckRequested{Instance: name}, &res)
	switch {
	case errors.Is(err, bus.ErrNoResponder):
		writeError(w, http.StatusServiceUnavailable,
			"no backup-streamer is running to check instance %q: start one (coffer up runs one; the coffer-backup-streamer service otherwise), then check again", name)
		return
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "no backup-streamer answered the check of instance %q within %v: see the streamer's log", name, URLCheckWait)
		return
	case err != nil:
		s.cfg.Logger.ErrorContext(r.Context(), "URL check failed", "instance", name, "err", err)
		writeError(w, http.StatusBadGateway, "the check of instance %q did not run: %v", name, err)
		return
	}
	writeJSON(w, http.StatusOK, URLCheck{Instance: res.GetInstance(), Streamer: res.GetStreamer(), Mode: res.GetMode(),
		ModeReason: res.GetModeReason(), OK: res.GetOk(), Problem: res.GetProblem(), Fix: res.GetFix()})
}
