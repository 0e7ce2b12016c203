package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// VaultRequest asks for a named vault (POST /api/v1/vaults): a directory
// (an absolute path the committer and streamers reach), or a bucket of an
// S3-compatible store. The secret key is sealed by the gateway at once and
// never stored, logged or answered in the clear.
type VaultRequest struct {
	Name           string `json:"name"`
	Dir            string `json:"dir,omitempty"`
	S3Endpoint     string `json:"s3_endpoint,omitempty"`
	S3Bucket       string `json:"s3_bucket,omitempty"`
	S3Prefix       string `json:"s3_prefix,omitempty"`
	S3AccessKey    string `json:"s3_access_key,omitempty"`
	S3SecretKey    string `json:"s3_secret_key,omitempty"`
	S3InsecureHTTP bool   `json:"s3_insecure_http,omitempty"`
	// S3CAPEM is the PEM of the CAs the store's certificate is checked
	// against; empty means the system's.
	S3CAPEM string `json:"s3_ca_pem,omitempty"`
	// ObjectLock makes an S3 vault immutable: "governance" or
	// "compliance" (S3 Object Lock's modes), or empty.
	ObjectLock string `json:"object_lock,omitempty"`
}

// Vault is a vault as GET /api/v1/vaults lists it: where it is, never its
// secret. The default vault, the one coffer's processes are configured
// with, is listed first, without a place (the gateway is not told it).
type Vault struct {
	Name       string     `json:"name"`
	Default    bool       `json:"default,omitempty"`
	Dir        string     `json:"dir,omitempty"`
	S3Endpoint string     `json:"s3_endpoint,omitempty"`
	S3Bucket   string     `json:"s3_bucket,omitempty"`
	S3Prefix   string     `json:"s3_prefix,omitempty"`
	CreatedAt  *time.Time `json:"created_at,omitempty"`
	// ObjectLock is the Object Lock mode of an immutable named vault
	// ("GOVERNANCE" or "COMPLIANCE").
	ObjectLock string `json:"object_lock,omitempty"`
}

// createVault validates the request, seals the S3 secret key and hands
// the creation to the committer, which owns the vaults bucket, as a job
// the caller follows.
func (s *Service) createVault(w http.ResponseWriter, r *http.Request) {
	var req VaultRequest
	if !readJSON(w, r, &req) {
		return
	}
	now := s.cfg.Now()
	rec := &cofferv1.VaultRecord{Name: req.Name, Dir: req.Dir, S3Endpoint: req.S3Endpoint, S3Bucket: req.S3Bucket,
		S3Prefix: req.S3Prefix, S3AccessKey: req.S3AccessKey, S3InsecureHttp: req.S3InsecureHTTP, S3CaPem: []byte(req.S3CAPEM), CreatedAt: timestamppb.New(now)}
	// the record keeps the mode as S3 spells it; a bad one is refused below
	rec.ObjectLock = req.ObjectLock
	if m, err := blob.ParseRetentionMode(req.ObjectLock); err == nil {
		rec.ObjectLock = string(m)
	}
	err := daemon.ValidateVaultRecord(rec)
	if req.S3SecretKey != "" && req.S3Endpoint == "" {
		err = errors.Join(err, errors.New("an S3 secret key is for an S3 vault"))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.S3SecretKey != "" {
		rec.SealedS3SecretKey = s.vaultSealer.Seal([]byte(req.S3SecretKey), req.Name)
	}
	jobID := event.NewJobID(now)
	rec.JobId = jobID
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now), Kind: cofferv1.JobKind_JOB_KIND_VAULT_CREATE,
		Detail: "create vault " + req.Name}
	if err := s.publish(r.Context(), cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	ev := &cofferv1.VaultCreateRequested{Meta: event.Meta(event.ID("vault-create", jobID), jobID, now), Vault: rec}
	if err := s.publish(r.Context(), cofferv1.SubjectVaultCreate, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.cfg.Logger.InfoContext(r.Context(), "vault create requested", "job_id", jobID, "vault", req.Name)
	writeJSON(w, http.StatusAccepted, Accepted{JobID: jobID})
}

// listVaults lists the default vault, then the named ones by name.
func (s *Service) listVaults(w http.ResponseWriter, r *http.Request) {
	out := []Vault{{Name: daemon.DefaultVault, Default: true}}
	err := s.cat.Bucket(cofferv1.BucketVaults).List(r.Context(), "", func() proto.Message { return &cofferv1.VaultRecord{} },
		func(_ string, m proto.Message) error {
			v := m.(*cofferv1.VaultRecord)
			out = append(out, Vault{Name: v.GetName(), Dir: v.GetDir(), S3Endpoint: v.GetS3Endpoint(), S3Bucket: v.GetS3Bucket(),
				S3Prefix: v.GetS3Prefix(), CreatedAt: ts(v.GetCreatedAt()), ObjectLock: v.GetObjectLock()})
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	slices.SortFunc(out[1:], func(a, b Vault) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
}

// checkVault refuses, as a request's error, a vault name that no vault
// has; it returns the name as records keep it ("" for the default).
func (s *Service) checkVault(ctx context.Context, name string) (string, int, error) {
	if daemon.IsDefaultVault(name) {
		return "", 0, nil
	}
	if err := daemon.ValidateVaultName(name); err != nil {
		return "", http.StatusBadRequest, err
	}
	_, err := s.cat.Bucket(cofferv1.BucketVaults).Get(ctx, catalog.Key(name), &cofferv1.VaultRecord{})
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return "", http.StatusNotFound, errors.New("no vault " + name + " (coffer vault list; coffer vault create NAME makes one)")
	case err != nil:
		return "", http.StatusServiceUnavailable, err
	}
	return name, 0, nil
}
