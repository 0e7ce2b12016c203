package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/topology"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The audit log is the bucket "audit" (owned by the gateway): one key per
// request that may change something, DAY.TIME-ID, so that a day's entries
// are listed by their prefix; entries expire after
// topology.AuditRetention. An entry is written before the request is
// served (outcome "started") and rewritten with its outcome after: a
// change whose entry cannot be written is not made.

// AuditEntry is one entry of the audit log as the API shows it.
type AuditEntry struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	User   string    `json:"user"`
	Role   string    `json:"role,omitempty"`
	Via    string    `json:"via"`
	Remote string    `json:"remote"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	// Outcome is started, succeeded, refused (401 or 403), rejected
	// (another 4xx) or failed (5xx).
	Outcome string `json:"outcome"`
	// Detail is the error's message, or the job the request started.
	Detail string `json:"detail,omitempty"`
}

// auditNote lets a handler name who is acting when the request itself
// does not (a sign-in names the user it tries).
type auditNote struct{ user string }

type auditNoteKey struct{}

// setAuditUser names the user a request acts for, in its audit entry.
func setAuditUser(r *http.Request, name string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.user = name
	}
}

// recorder keeps the status and the start of the body of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if room := 64<<10 - rec.body.Len(); room > 0 {
		rec.body.Write(b[:min(len(b), room)])
	}
	return rec.ResponseWriter.Write(b)
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// audited serves a request that may change something, writing its entry
// before and its outcome after.
func (s *Service) audited(w http.ResponseWriter, r *http.Request, p Principal, serve http.HandlerFunc) {
	now := s.cfg.Now().UTC()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	id := now.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(suffix)
	key := catalog.Key(now.Format("2006-01-02"), id)
	remote, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		remote = r.RemoteAddr
	}
	e := &cofferv1.AuditEntry{Id: id, Time: timestamppb.New(now), User: p.Name, Via: p.Via, Remote: remote,
		Method: r.Method, Path: r.URL.RequestURI(), Outcome: "started"}
	if p.Role != RolePublic {
		e.Role = p.Role.String()
	}
	if _, err := s.cat.Bucket(cofferv1.BucketAudit).Create(r.Context(), key, e); err != nil {
		s.unavailable(w, r, err)
		return
	}
	note := &auditNote{}
	rec := &recorder{ResponseWriter: w}
	serve(rec, r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note)))
	if note.user != "" && e.User == "" {
		e.User = note.user
	}
	e.Status = int32(cmp.Or(rec.status, http.StatusOK))
	e.Outcome, e.Detail = outcome(int(e.Status), rec.body.Bytes())
	// the request's context may be over (the caller left): the outcome is
	// still recorded
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if _, err := s.cat.Bucket(cofferv1.BucketAudit).Put(ctx, key, e); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "audit outcome not recorded", "audit_id", id, "path", e.Path, "status", e.Status, "err", err)
	}
}

// outcome classifies an answer and picks what to record of its body.
func outcome(status int, body []byte) (string, string) {
	var ans struct {
		Error ErrorBody `json:"error"`
		JobID string    `json:"job_id"`
	}
	json.Unmarshal(body, &ans)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "refused", ans.Error.Message
	case status >= 500:
		return "failed", ans.Error.Message
	case status >= 400:
		return "rejected", ans.Error.Message
	}
	if ans.JobID != "" {
		return "succeeded", "job " + ans.JobID
	}
	return "succeeded", ""
}

// listAudit serves the audit log, newest first: GET /api/v1/audit
// [?since=RFC3339][&user=NAME][&limit=N] (default: the last 7 days, 100
// entries).
func (s *Service) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := s.cfg.Now().UTC()
	since := now.Add(-7 * 24 * time.Hour)
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since=%q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", v)
			return
		}
		since = t.UTC()
	}
	if oldest := now.Add(-topology.AuditRetention); since.Before(oldest) {
		since = oldest
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit=%q: want 1 to 10000", v)
			return
		}
		limit = n
	}
	user := q.Get("user")
	out := []AuditEntry{}
	// a day at a time, newest first, until enough
	for day := now.Truncate(24 * time.Hour); !day.Before(since.Truncate(24 * time.Hour)); day = day.Add(-24 * time.Hour) {
		var got []AuditEntry
		err := s.cat.Bucket(cofferv1.BucketAudit).List(r.Context(), catalog.Key(day.Format("2006-01-02")),
			func() proto.Message { return &cofferv1.AuditEntry{} },
			func(_ string, m proto.Message) error {
				e := m.(*cofferv1.AuditEntry)
				if e.GetTime().AsTime().Before(since) || user != "" && e.GetUser() != user {
					return nil
				}
				got = append(got, AuditEntry{ID: e.GetId(), Time: e.GetTime().AsTime(), User: e.GetUser(), Role: e.GetRole(), Via: e.GetVia(),
					Remote: e.GetRemote(), Method: e.GetMethod(), Path: e.GetPath(), Status: int(e.GetStatus()), Outcome: e.GetOutcome(), Detail: e.GetDetail()})
				return nil
			})
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		sort.Slice(got, func(a, b int) bool { return got[a].ID > got[b].ID })
		out = append(out, got...)
		if len(out) >= limit {
			out = out[:limit]
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}
