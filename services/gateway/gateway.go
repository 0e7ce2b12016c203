// Package gateway is coffer's REST API: it turns users' commands into
// events and answers queries from the catalog. It owns nothing durable.
package gateway

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/secret"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Config configures the gateway.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// MasterKey seals instance credentials.
	MasterKey []byte
	// Token, when set, is an admin's API token: "Authorization: Bearer
	// <token>" (the users' own tokens work beside it).
	Token string
	// TLSCertFile and TLSKeyFile are the API's certificate and key; or
	// else TLSCADir holds coffer's CA (created if absent), which issues
	// the API a certificate for TLSHosts, the listen host and loopback.
	// With neither, the API is plain HTTP, which it serves on loopback
	// only.
	TLSCertFile, TLSKeyFile string
	TLSCADir                string
	TLSHosts                []string
	// PlainHTTP serves plain HTTP beyond loopback: behind a proxy that
	// ends TLS, on a network the operator trusts. Without it, plain HTTP
	// is served on loopback only.
	PlainHTTP bool
	// FirstAdmin, when set, is the admin created when the gateway starts
	// with no user: its API token is printed once to FirstAdminOut.
	FirstAdmin     string
	FirstAdminOut  io.Writer
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
	Now            func() time.Time
	// Metrics, when set, is served on GET /metrics (to a viewer or
	// above, untraced): coffer up serves its whole process's
	// metrics there.
	Metrics http.Handler
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.MasterKey) != 32 {
		errs = append(errs, errors.New("a 32-byte master key is required to seal instance credentials"))
	}
	if c.FirstAdmin != "" {
		if err := validUserName(c.FirstAdmin); err != nil {
			errs = append(errs, fmt.Errorf("first admin: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Service is the gateway.
type Service struct {
	cfg    Config
	bus    *bus.Bus
	cat    *catalog.Catalog
	sealer *secret.Sealer
	tracer trace.Tracer
	ln     net.Listener
	// tls serves the API over HTTPS; nil for plain HTTP (loopback only).
	tls *tls.Config
	// sessionKey signs the dashboard's sessions (from the master key).
	sessionKey []byte
	// closed is set once users are found to exist: see open.
	closed atomic.Bool
	// hashing bounds the password checks running at once.
	hashing chan struct{}
	// vaultSealer seals the S3 secret keys of named vaults
	vaultSealer *secret.Sealer
}

// New returns a gateway.
func New(b *bus.Bus, cat *catalog.Catalog, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	s, err := secret.New(cfg.MasterKey, "instance-credentials")
	if err != nil {
		return nil, err
	}
	tc, err := cfg.serverTLS()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	vs, err := secret.New(cfg.MasterKey, daemon.VaultCredentialsPurpose)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, cfg.MasterKey)
	m.Write([]byte("coffer gateway sessions v1"))
	return &Service{cfg: cfg, bus: b, cat: cat, sealer: s, vaultSealer: vs, tracer: cfg.TracerProvider.Tracer("coffer/gateway"), tls: tc,
		sessionKey: m.Sum(nil), hashing: make(chan struct{}, 2)}, nil
}

// Listen binds the HTTP address, so that callers learn it (Addr) before
// Run serves. Plain HTTP is refused beyond loopback.
func (s *Service) Listen() error {
	if s.tls == nil && !s.loopback() && !s.cfg.PlainHTTP {
		return fmt.Errorf("gateway: listen on %s: %w", s.cfg.Addr, errPlainOffLoopback)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// URL is the API's base address on this machine, after Listen: https://
// when it serves TLS, and 127.0.0.1 for a gateway listening on every
// address.
func (s *Service) URL() string {
	addr := s.Addr()
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	if s.tls != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// Addr is the address the gateway listens on, after Listen.
func (s *Service) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Run serves the API until ctx is done, then shuts the server down.
func (s *Service) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	if err := s.createFirstAdmin(ctx); err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)} // TLS handshake failures, among others
	ln := s.ln
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.cfg.Logger.Info("gateway listening", "addr", s.Addr(), "tls", s.tls != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// traced starts a span for each request: the root of a job's trace.
func (s *Service) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			next.ServeHTTP(w, r) // a scrape every few seconds is no one's trace
			return
		}
		ctx, span := s.tracer.Start(r.Context(), r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// readJSON decodes a request body, refusing unknown fields and anything
// after the value.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed request body: %v", err)
		return false
	}
	// what follows the value would be silently dropped: a second object
	// pasted by mistake, or the rest of a body cut in the wrong place
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "malformed request body: data after the JSON value: send one JSON object")
		return false
	}
	return true
}

// unavailable answers a failure to reach NATS or the catalog.
func (s *Service) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Logger.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusServiceUnavailable, "coffer's event bus or catalog is unavailable: %v", err)
}

func (s *Service) publish(ctx context.Context, subject string, m proto.Message, id string) error {
	return s.bus.Publish(ctx, subject, m, id)
}

func validInstanceName(name string) error {
	switch {
	case name == "":
		return errors.New("instance name is empty")
	case strings.ContainsAny(name, "/"):
		return errors.New("instance name must not contain '/': databases are named INSTANCE/DATABASE")
	case len(name) > 128:
		return errors.New("instance name is longer than 128 characters")
	case strings.TrimSpace(name) != name:
		return errors.New("instance name must not start or end with spaces")
	}
	return nil
}

func (s *Service) listInstances(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auto := map[string]*cofferv1.AutoprotectSetting{}
	err := s.cat.Bucket(cofferv1.BucketAutoprotect).List(ctx, "", func() proto.Message { return &cofferv1.AutoprotectSetting{} },
		func(_ string, m proto.Message) error {
			a := m.(*cofferv1.AutoprotectSetting)
			auto[a.GetInstance()] = a
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	out := []Instance{}
	err = s.cat.Bucket(cofferv1.BucketInstances).List(ctx, "", func() proto.Message { return &cofferv1.Instance{} },
		func(_ string, m proto.Message) error {
			in := m.(*cofferv1.Instance)
			out = append(out, Instance{Name: in.GetName(), Healthy: in.GetHealthy(), Reason: in.GetReason(), Fix: in.GetFix(),
				ServerName: in.GetServerName(), Version: in.GetVersion(), Edition: in.GetEdition(), Sysadmin: in.GetSysadmin(),
				Databases: int(in.GetDatabaseCount()), RegisteredAt: ts(in.GetRegisteredAt()), DiscoveredAt: ts(in.GetDiscoveredAt()),
				Autoprotect: auto[in.GetName()].GetEnabled(), AutoprotectTo: auto[in.GetName()].GetPolicy(), Mode: modeName(in.GetBackupMode()),
				Registration: in.GetRegistrationId()})
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) addInstance(w http.ResponseWriter, r *http.Request) {
	var req AddInstance
	if !readJSON(w, r, &req) {
		return
	}
	if err := validInstanceName(req.Name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.DSN == "" {
		writeError(w, http.StatusBadRequest, "dsn is empty: give a connection string such as sqlserver://user:password@host:1433")
		return
	}
	switch req.Mode {
	case "auto":
		req.Mode = ""
	case "", "url", "disk":
	default:
		writeError(w, http.StatusBadRequest, "mode %q: want auto, url or disk", req.Mode)
		return
	}
	c, err := mssql.Open(req.DSN)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid connection string: %v", err)
		return
	}
	if req.Test {
		defer c.Close()
		writeJSON(w, http.StatusOK, testInstance(r.Context(), c, req))
		return
	}
	c.Close()
	now := s.cfg.Now()
	ev := &cofferv1.InstanceAddRequested{Meta: event.Meta(event.ID("instance-add", req.Name, now.String()), "", now),
		Name: req.Name, SealedDsn: s.sealer.Seal([]byte(req.DSN), req.Name), BackupMode: req.Mode}
	if err := s.publish(r.Context(), cofferv1.SubjectInstanceAddRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.cfg.Logger.InfoContext(r.Context(), "instance registration requested", "instance", req.Name)
	writeJSON(w, http.StatusAccepted, Instance{Name: req.Name, Mode: modeName(req.Mode), Registration: ev.Meta.EventId})
}

// registered reports whether instance name is registered, answering the
// request with the reason when it is not.
func (s *Service) registered(w http.ResponseWriter, r *http.Request, name string) bool {
	var in cofferv1.Instance
	if _, err := s.cat.Bucket(cofferv1.BucketInstances).Get(r.Context(), catalog.Key(name), &in); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			writeError(w, http.StatusNotFound, "instance %q is not registered", name)
			return false
		}
		s.unavailable(w, r, err)
		return false
	}
	return true
}

func (s *Service) discover(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.registered(w, r, name) {
		return
	}
	now := s.cfg.Now()
	ev := &cofferv1.DiscoverRequested{Meta: event.Meta(event.ID("discover", name, now.String()), "", now), Instance: name}
	if err := s.publish(r.Context(), cofferv1.SubjectDiscoverRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, Instance{Name: name})
}

func (s *Service) autoprotect(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req Autoprotect
	if !readJSON(w, r, &req) {
		return
	}
	now := s.cfg.Now()
	ev := &cofferv1.AutoprotectRequested{Meta: event.Meta(event.ID("autoprotect", name, now.String()), "", now),
		Setting: &cofferv1.AutoprotectSetting{Instance: name, Enabled: req.Enabled, Policy: req.Policy}}
	if err := s.publish(r.Context(), cofferv1.SubjectAutoprotectRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, req)
}

func (s *Service) listDatabases(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	instance := r.URL.Query().Get("instance")
	prefix := ""
	if instance != "" {
		prefix = catalog.Key(instance)
	}
	prot := map[string]*cofferv1.ProtectedItem{}
	err := s.cat.Bucket(cofferv1.BucketProtected).List(ctx, prefix, func() proto.Message { return &cofferv1.ProtectedItem{} },
		func(key string, m proto.Message) error {
			prot[key] = m.(*cofferv1.ProtectedItem)
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	out := []Database{}
	err = s.cat.Bucket(cofferv1.BucketInventory).List(ctx, prefix, func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(key string, m proto.Message) error {
			d := m.(*cofferv1.DatabaseInfo)
			parts, err := catalog.SplitKey(key)
			if err != nil || len(parts) != 2 {
				return nil
			}
			db := Database{Instance: parts[0], Name: d.GetName(), State: d.GetState(), RecoveryModel: d.GetRecoveryModel(),
				ReadOnly: d.GetReadOnly(), SizeBytes: d.GetSizeBytes(), Created: ts(d.GetCreateDate())}
			if p := prot[key]; p != nil {
				db.Protected = p.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED
				db.Policy, db.LastError, db.Vault = p.GetPolicy(), p.GetLastError(), p.GetVault()
				db.ProtectionState = strings.ToLower(strings.TrimPrefix(p.GetState().String(), "PROTECTION_STATE_"))
			}
			out = append(out, db)
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Instance != out[b].Instance {
			return out[a].Instance < out[b].Instance
		}
		return out[a].Name < out[b].Name
	})
	writeJSON(w, http.StatusOK, out)
}

// resolve finds a database in the inventory: the exact name, or else the
// only one that matches ignoring case (SQL Server's default collation).
func (s *Service) resolve(ctx context.Context, instance, database string) (*cofferv1.DatabaseRef, int, error) {
	inv := s.cat.Bucket(cofferv1.BucketInventory)
	var d cofferv1.DatabaseInfo
	_, err := inv.Get(ctx, catalog.Key(instance, database), &d)
	if err == nil {
		return &cofferv1.DatabaseRef{Instance: instance, Database: d.GetName()}, 0, nil
	}
	if !errors.Is(err, catalog.ErrNotFound) {
		return nil, http.StatusServiceUnavailable, err
	}
	var matches []string
	err = inv.List(ctx, catalog.Key(instance), func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(_ string, m proto.Message) error {
			if n := m.(*cofferv1.DatabaseInfo).GetName(); strings.EqualFold(n, database) {
				matches = append(matches, n)
			}
			return nil
		})
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	if len(matches) == 1 {
		return &cofferv1.DatabaseRef{Instance: instance, Database: matches[0]}, 0, nil
	}
	if len(matches) > 1 {
		// case twins, which a case-sensitive server collation allows
		sort.Strings(matches)
		quoted := make([]string, len(matches))
		for k, m := range matches {
			quoted[k] = strconv.Quote(m)
		}
		return nil, http.StatusNotFound, fmt.Errorf("no database %q on instance %q, but %s differ from it only in case: name one exactly", database, instance, strings.Join(quoted, ", "))
	}
	return nil, http.StatusNotFound, fmt.Errorf("no database %q on instance %q (coffer db list %s)", database, instance, instance)
}

func (s *Service) protect(w http.ResponseWriter, r *http.Request) {
	var req DatabaseRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.DeleteData {
		writeError(w, http.StatusBadRequest, "delete_data is for unprotect, not protect")
		return
	}
	if len(req.Databases) > 0 {
		s.protectMany(w, r, req)
		return
	}
	ref, status, err := s.resolve(r.Context(), req.Instance, req.Database)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}
	vault, status, err := s.checkVault(r.Context(), req.Vault)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}
	now := s.cfg.Now()
	ev := &cofferv1.ProtectionRequested{Meta: event.Meta(event.ID("protect", ref.Instance, ref.Database, now.String()), "", now),
		Database: ref, Policy: req.Policy, RequestedBy: "user", Attempt: 1, Vault: vault}
	if err := s.publish(r.Context(), cofferv1.SubjectProtectionRequested, ev, ev.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, DatabaseRequest{Instance: ref.Instance, Database: ref.Database, Policy: req.Policy, Vault: vault})
}

func (s *Service) unprotect(w http.ResponseWriter, r *http.Request) {
	var req DatabaseRequest
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Databases) > 0 {
		s.unprotectMany(w, r, req)
		return
	}
	ref := &cofferv1.DatabaseRef{Instance: req.Instance, Database: req.Database}
	if found, _, err := s.resolve(r.Context(), req.Instance, req.Database); err == nil && req.DeleteData {
		// the recovery points are kept under the exact name; a dropped
		// database's, which are no longer listed, under the name given
		ref = found
	}
	done, err := s.requestUnprotect(r, ref, req.DeleteData, req.By)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	req.Database, req.DeleteJob = done.Database, done.DeleteJob
	writeJSON(w, http.StatusAccepted, req)
}

// requestUnprotect asks for ref to be unprotected and, with deleteData,
// for its recovery points to be deleted (soft) by a job; it answers the
// database and that job.
func (s *Service) requestUnprotect(r *http.Request, ref *cofferv1.DatabaseRef, deleteData bool, by string) (DatabaseRequest, error) {
	now := s.cfg.Now()
	ev := &cofferv1.UnprotectRequested{Meta: event.Meta(event.ID("unprotect", ref.Instance, ref.Database, now.String()), "", now), Database: ref,
		DeleteData: deleteData}
	if err := s.publish(r.Context(), cofferv1.SubjectUnprotectRequested, ev, ev.Meta.EventId); err != nil {
		return DatabaseRequest{}, err
	}
	out := DatabaseRequest{Instance: ref.Instance, Database: ref.Database, DeleteData: deleteData}
	if deleteData {
		jobID := event.NewJobID(now)
		del := &cofferv1.RecoveryPointsDeleteRequested{Meta: event.Meta(event.ID("delete", jobID), jobID, now), Database: ref, All: true,
			RequestedBy: requester(r, by)}
		if err := s.publish(r.Context(), cofferv1.SubjectRecoveryPointsDelete, del, del.Meta.EventId); err != nil {
			return DatabaseRequest{}, fmt.Errorf("%s/%s unprotected, its recovery points not deleted: %w", ref.Instance, ref.Database, err)
		}
		out.DeleteJob = jobID
	}
	return out, nil
}

func (s *Service) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if !readJSON(w, r, &req) {
		return
	}
	typ, ok := ParseBackupType(req.Type)
	if !ok {
		writeError(w, http.StatusBadRequest, "unknown backup type %q: use full, copy_only, differential or log", req.Type)
		return
	}
	if len(req.Databases) > 0 {
		s.backupMany(w, r, req, typ)
		return
	}
	ref, status, err := s.resolve(r.Context(), req.Instance, req.Database)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}
	jobID, err := s.requestBackup(r, ref, typ)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, Accepted{JobID: jobID})
}

// requestBackup asks for an on-demand backup of ref and answers its job.
func (s *Service) requestBackup(r *http.Request, ref *cofferv1.DatabaseRef, typ cofferv1.BackupType) (string, error) {
	now := s.cfg.Now()
	jobID := event.NewJobID(now)
	ev := &cofferv1.BackupOnDemandRequested{Meta: event.Meta(event.ID("on-demand", jobID), jobID, now), Database: ref, Type: typ}
	if err := s.publish(r.Context(), cofferv1.SubjectBackupOnDemand, ev, ev.Meta.EventId); err != nil {
		return "", err
	}
	s.cfg.Logger.InfoContext(r.Context(), "on-demand backup requested", "job_id", jobID, "instance", ref.Instance, "database", ref.Database)
	return jobID, nil
}

// recoveryPoints lists a database's recovery points, oldest first; those
// a person deleted only when deleted is set.
func (s *Service) recoveryPoints(ctx context.Context, instance, database string, deleted bool) ([]*cofferv1.RecoveryPoint, error) {
	prefix := ""
	switch {
	case instance != "" && database != "":
		prefix = catalog.Key(instance, database)
	case instance != "":
		prefix = catalog.Key(instance)
	}
	var out []*cofferv1.RecoveryPoint
	err := s.cat.Bucket(cofferv1.BucketRecoveryPoints).List(ctx, prefix, func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(_ string, m proto.Message) error {
			out = append(out, m.(*cofferv1.RecoveryPoint))
			return nil
		})
	sort.SliceStable(out, func(a, b int) bool {
		return out[a].GetBackup().GetBackupFinish().AsTime().Before(out[b].GetBackup().GetBackupFinish().AsTime())
	})
	if !deleted {
		out = policy.Live(out)
	}
	return out, err
}

func (s *Service) listRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	instance, database := q.Get("instance"), q.Get("database")
	if instance != "" && database != "" {
		if ref, _, err := s.resolve(r.Context(), instance, database); err == nil {
			database = ref.Database
		}
	}
	deleted, err := strconv.ParseBool(cmp.Or(q.Get("deleted"), "false"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "deleted=%q: want true or false", q.Get("deleted"))
		return
	}
	rps, err := s.recoveryPoints(r.Context(), instance, database, deleted)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	out := make([]RecoveryPoint, 0, len(rps))
	breaks := chainBreaks(policy.Live(rps))
	for _, rp := range rps {
		r := rpFromProto(rp)
		r.ChainBreak = breaks[rp.GetDatabase().GetInstance()+"/"+rp.GetDatabase().GetDatabase()+"/"+rp.GetId()]
		out = append(out, r)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) restore(w http.ResponseWriter, r *http.Request) {
	var req RestoreRequest
	if !readJSON(w, r, &req) {
		return
	}
	if problem := req.problem(); problem != "" {
		writeError(w, http.StatusBadRequest, "%s", problem)
		return
	}
	if p := principal(r); req.Overwrite && !req.DryRun && p.Role < RoleAdmin {
		writeError(w, http.StatusForbidden, "an overwrite restore needs the admin role; %s is %s: restore to a new name (--as) instead", p.Name, p.Role)
		return
	}
	if req.FromVault != "" {
		if _, status, err := s.checkVault(r.Context(), req.FromVault); err != nil {
			writeError(w, status, "%v", err)
			return
		}
	}
	if req.TargetInstance == "" {
		req.TargetInstance = req.Instance
	}
	database := req.Database
	if ref, _, err := s.resolve(r.Context(), req.Instance, req.Database); err == nil {
		database = ref.Database
	}
	if req.TargetDatabase == "" {
		req.TargetDatabase = database
	}
	all, err := s.recoveryPoints(r.Context(), req.Instance, database, true)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if i := slices.IndexFunc(all, func(rp *cofferv1.RecoveryPoint) bool { return rp.GetId() == req.Point }); req.Point != "" && i >= 0 && all[i].GetDeletedAt() != nil {
		writeError(w, http.StatusUnprocessableEntity, "recovery point %s is deleted (%s): coffer rp undelete %s brings it back", req.Point, policy.DeletedNote(all[i]), req.Point)
		return
	}
	rps := policy.Live(all)
	plan, err := planRestore(rps, req)
	if err == nil {
		_, err = serverStop(rps, plan)
	}
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	acc := Accepted{Plan: plan.IDs(), At: &plan.At, StopAtMark: plan.StopAtMark, StopBeforeMark: plan.StopBeforeMark}
	if !plan.StopAt.IsZero() {
		acc.StopAt = &plan.StopAt
	}
	for _, st := range plan.Steps {
		acc.Steps = append(acc.Steps, PlanStep{RecoveryPoint: st.ID, Type: st.Kind.String(), Taken: st.Taken})
	}
	var names []string
	if req.ToDirectory != "" {
		names, acc.Script = asFiles(rps, plan, req)
		req.TargetInstance = ""
	} else {
		if !s.registered(w, r, req.TargetInstance) {
			return
		}
	}
	if req.DryRun {
		writeJSON(w, http.StatusOK, acc)
		return
	}
	now := s.cfg.Now()
	jobID := event.NewJobID(now)
	src := &cofferv1.DatabaseRef{Instance: req.Instance, Database: database}
	dst := &cofferv1.DatabaseRef{Instance: req.TargetInstance, Database: req.TargetDatabase}
	detail := "restore " + strings.Join(acc.Plan, ", ")
	switch {
	case acc.StopAt != nil:
		detail += " stopping at " + acc.StopAt.UTC().Format(time.RFC3339Nano)
	case plan.StopAtMark != "":
		detail += fmt.Sprintf(" stopping at mark %q", plan.StopAtMark)
	case plan.StopBeforeMark != "":
		detail += fmt.Sprintf(" stopping before mark %q", plan.StopBeforeMark)
	}
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now), Kind: cofferv1.JobKind_JOB_KIND_RESTORE,
		Database: src, Target: dst, Detail: detail}
	if err := s.publish(r.Context(), cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	work := &cofferv1.RestoreRequested{Meta: event.Meta(event.ID("restore-work", jobID), jobID, now), RecoveryPoints: acc.Plan,
		Source: src, Target: dst, Overwrite: req.Overwrite, DataPath: req.DataPath, LogPath: req.LogPath, NoRecovery: req.NoRecovery,
		ToDirectory: req.ToDirectory, FileNames: names, Script: acc.Script, StopAtMark: plan.StopAtMark, StopBeforeMark: plan.StopBeforeMark,
		Latest: req.Latest, FromVault: req.FromVault}
	if acc.StopAt != nil {
		work.StopAt = timestamppb.New(*acc.StopAt)
	}
	if plan.StopAtMark != "" || plan.StopBeforeMark != "" {
		// the latest transaction of that name, which the plan chose
		work.MarkAfter = timestamppb.New(plan.At)
	}
	if err := s.publish(r.Context(), cofferv1.SubjectWorkRestore, work, work.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.cfg.Logger.InfoContext(r.Context(), "restore requested", "job_id", jobID, "instance", src.Instance, "database", src.Database,
		"target_instance", dst.Instance, "target_database", dst.Database)
	acc.JobID = jobID
	writeJSON(w, http.StatusAccepted, acc)
}

// problem says what makes a restore request unusable, or "".
func (req *RestoreRequest) problem() string {
	targets := 0
	for _, set := range []bool{req.Point != "", req.Time != nil, req.Latest, req.Mark != ""} {
		if set {
			targets++
		}
	}
	switch {
	case req.ToDirectory != "" && !filepath.IsAbs(req.ToDirectory):
		return fmt.Sprintf("to_directory %q is not an absolute path", req.ToDirectory)
	case req.TargetDatabase == "" && req.ToDirectory == "":
		return "target_database is empty: name the database to restore into"
	case targets != 1:
		return "give exactly one of point, time, mark and latest"
	case req.BeforeMark && req.Mark == "":
		return "before_mark needs a mark"
	case req.ToDirectory != "" && !mssql.SafeInScript(req.Mark):
		// RESTORE takes a mark only as a literal, and a script must not
		// hold a line break that sqlcmd would read as GO or a command
		return fmt.Sprintf("mark %q holds a line break or another control character, which a restore script cannot carry: restore it to an instance instead of as files", req.Mark)
	}
	return ""
}

// asFiles names the files of a restore as files (in apply order, so that
// a directory listing shows the order) and writes the script that applies
// them.
func asFiles(rps []*cofferv1.RecoveryPoint, plan policy.Plan, req RestoreRequest) ([]string, string) {
	byID := make(map[string]*cofferv1.RecoveryPoint, len(rps))
	for _, rp := range rps {
		byID[rp.GetId()] = rp
	}
	sc := mssql.Script{Database: req.TargetDatabase, StopAt: plan.StopAt, StopAtMark: plan.StopAtMark, StopBeforeMark: plan.StopBeforeMark,
		NoRecovery: req.NoRecovery}
	var names []string
	for i, st := range plan.Steps {
		name := fmt.Sprintf("%02d-%s-%s.bak", i+1, strings.ReplaceAll(st.Kind.String(), " ", "-"), st.ID)
		names = append(names, name)
		sc.Files = append(sc.Files, mssql.ScriptFile{Path: filepath.Join(req.ToDirectory, name), Stripes: int(byID[st.ID].GetStripes()), Log: st.Kind == policy.Log,
			Note: fmt.Sprintf("%s %s, taken %s", st.Kind, st.ID, st.Taken.UTC().Format(time.RFC3339))})
	}
	if len(plan.Steps) > 0 {
		for _, f := range byID[plan.Steps[0].ID].GetBackup().GetFiles() {
			sc.LogicalNames = append(sc.LogicalNames, f.GetLogicalName())
		}
	}
	if n := len(plan.Steps); n > 0 && !plan.StopAt.IsZero() {
		// SQL Server reads STOPAT in its local time (checked by serverStop
		// before the plan was accepted)
		sc.UTCOffset = time.Duration(byID[plan.Steps[n-1].ID].GetBackup().GetUtcOffsetMinutes()) * time.Minute
		sc.StopAt, _ = serverStop(rps, plan)
	}
	if n := len(plan.Steps); n > 0 && (plan.StopAtMark != "" || plan.StopBeforeMark != "") {
		sc.MarkAfter = plan.At.Add(time.Duration(byID[plan.Steps[n-1].ID].GetBackup().GetUtcOffsetMinutes()) * time.Minute)
	}
	return names, sc.String()
}

// modeName names an instance's backup mode for the API: "" is auto.
func modeName(m string) string {
	if m == "" {
		return "auto"
	}
	return m
}

// serverStop is the plan's STOPAT as the server's wall clock reads it
// (policy.ServerTime), zero when the plan stops at no moment. A moment
// inside a log during which the server's offset changed is refused here,
// before a job is queued.
func serverStop(rps []*cofferv1.RecoveryPoint, plan policy.Plan) (time.Time, error) {
	n := len(plan.Steps)
	if n == 0 || plan.StopAt.IsZero() {
		return time.Time{}, nil
	}
	byID := make(map[string]*cofferv1.RecoveryPoint, len(rps))
	for _, rp := range rps {
		byID[rp.GetId()] = rp
	}
	var prev *cofferv1.BackupMetadata
	if n > 1 {
		prev = byID[plan.Steps[n-2].ID].GetBackup()
	}
	t, err := policy.ServerTime(plan.StopAt, prev, byID[plan.Steps[n-1].ID].GetBackup())
	if err != nil {
		return t, fmt.Errorf("cannot restore to that moment: %w", err)
	}
	return t, nil
}

// planRestore computes the whole restore sequence for the request's
// target (a recovery point, a moment, or the latest moment) and checks it
// against the chain rules before anything moves.
func planRestore(rps []*cofferv1.RecoveryPoint, req RestoreRequest) (policy.Plan, error) {
	pts, err := policy.PointsFromRecords(rps)
	if err != nil {
		return policy.Plan{}, err
	}
	switch {
	case req.Point != "":
		if !slices.ContainsFunc(pts, func(p policy.Point) bool { return p.ID == req.Point }) {
			return policy.Plan{}, fmt.Errorf("no recovery point %q for this database (coffer rp list)", req.Point)
		}
		p, err := policy.PlanPoint(pts, req.Point)
		if err != nil {
			return p, fmt.Errorf("recovery point %s cannot be restored: %w", req.Point, err)
		}
		return p, nil
	case req.Mark != "":
		p, err := policy.PlanMark(pts, req.Mark, req.BeforeMark)
		if err != nil {
			return p, fmt.Errorf("cannot restore to that mark: %w", err)
		}
		return p, nil
	case req.Time != nil:
		p, err := policy.PlanAt(pts, *req.Time)
		if err != nil {
			return p, fmt.Errorf("cannot restore to that moment: %w", err)
		}
		return p, nil
	}
	p, err := policy.PlanLatest(pts)
	if err != nil {
		return p, fmt.Errorf("cannot restore: %w", err)
	}
	return p, nil
}

// verify queues a test restore of a database now: its latest moment and a
// random one, restored to scratch databases, checked and dropped.
func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	var req VerifyRequest
	if !readJSON(w, r, &req) {
		return
	}
	database := req.Database
	if ref, _, err := s.resolve(r.Context(), req.Instance, req.Database); err == nil {
		database = ref.Database
	}
	on := req.ScratchInstance
	if on == "" {
		on = req.Instance
	}
	if !s.registered(w, r, on) {
		return
	}
	rps, err := s.recoveryPoints(r.Context(), req.Instance, database, false)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	now := s.cfg.Now()
	targets, err := policy.VerifyTargetsOf(rps, rand.New(rand.NewPCG(uint64(now.UnixNano()), 0)))
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "nothing to verify: %v", err)
		return
	}
	jobID := event.NewJobID(now)
	ref := &cofferv1.DatabaseRef{Instance: req.Instance, Database: database}
	q := &cofferv1.JobQueued{Meta: event.Meta(event.ID("job-queued", jobID), jobID, now), Kind: cofferv1.JobKind_JOB_KIND_VERIFY,
		Database: ref, Detail: fmt.Sprintf("test restore of %d target(s) on %s", len(targets), on)}
	if err := s.publish(r.Context(), cofferv1.SubjectJobQueued, q, q.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	work := &cofferv1.VerifyRequested{Meta: event.Meta(event.ID("verify-work", jobID), jobID, now), Database: ref, Instance: on, Targets: targets}
	if err := s.publish(r.Context(), cofferv1.SubjectWorkVerify, work, work.Meta.EventId); err != nil {
		s.unavailable(w, r, err)
		return
	}
	acc := Accepted{JobID: jobID}
	for _, t := range targets {
		acc.Plan = append(acc.Plan, t.GetRecoveryPoints()[len(t.GetRecoveryPoints())-1])
	}
	writeJSON(w, http.StatusAccepted, acc)
}

func (s *Service) listRanges(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	instance, database := q.Get("instance"), q.Get("database")
	if instance == "" || database == "" {
		writeError(w, http.StatusBadRequest, "name the database: instance and database")
		return
	}
	if ref, _, err := s.resolve(r.Context(), instance, database); err == nil {
		database = ref.Database
	}
	rps, err := s.recoveryPoints(r.Context(), instance, database, false)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	pts, err := policy.PointsFromRecords(rps)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	out := []RecoveryRange{}
	for _, rg := range policy.Ranges(pts) {
		out = append(out, RecoveryRange{From: rg.From, To: rg.To, Start: rg.Start, End: rg.End, Break: rg.Break})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) listJobs(w http.ResponseWriter, r *http.Request) {
	out := []Job{}
	err := s.cat.Bucket(cofferv1.BucketJobs).List(r.Context(), "", func() proto.Message { return &cofferv1.Job{} },
		func(_ string, m proto.Message) error {
			out = append(out, jobFromProto(m.(*cofferv1.Job)))
			return nil
		})
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].ID > out[b].ID })
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) getJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.readJob(w, r); ok {
		writeJSON(w, http.StatusOK, jobDetail(j, s.cfg.Now()))
	}
}

// chainBreaks finds, per database, the points whose chain is broken, keyed
// by instance/database/id.
func chainBreaks(rps []*cofferv1.RecoveryPoint) map[string]string {
	byDB := map[string][]policy.Point{}
	for _, rp := range rps {
		pt, err := policy.PointFromRecord(rp)
		if err != nil {
			continue
		}
		k := rp.GetDatabase().GetInstance() + "/" + rp.GetDatabase().GetDatabase()
		byDB[k] = append(byDB[k], pt)
	}
	out := map[string]string{}
	for k, pts := range byDB {
		for _, g := range policy.Gaps(pts) {
			out[k+"/"+g.Before] = g.Reason
		}
	}
	return out
}
