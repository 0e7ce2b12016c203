package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/telemetry/telemetrytest"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// harness is coffer running in-process (as `coffer up` runs it) against a
// simulated SQL Server.
type harness struct {
	t      *testing.T
	api    string
	sim    *mssqlsim.Instance
	simDSN string
	data   string
	key    string
	traces *telemetrytest.Recorder
	run    *running
	// dsn is the SQL Server register adds as sql1: the simulator's, or
	// harnessOptions.dsn.
	dsn string
	// s3 holds the vault with harnessOptions.s3, nil otherwise.
	s3 *miniotest.Server
	// transcript, when set, receives the output and the error of every
	// CLI command the harness runs.
	transcript io.Writer
	token      string
	// up is how coffer up was started, so that restart starts it again
	// alike.
	up struct {
		args   []string
		env    map[string]string
		clock  func() time.Time
		logger *slog.Logger
	}
}

type harnessOptions struct {
	s3 bool // vault in MinIO instead of a directory
	// objectLock, with s3, makes the vault immutable in this mode
	// (`coffer vault create --object-lock`) before coffer starts.
	objectLock string
	data       string
	key        string
	pages      int
	// clock drives the simulator, the scheduler and the committer; their
	// ticks then come only from the test.
	clock func() time.Time
	// location is the simulated server's time zone (default UTC).
	location *time.Location
	// dsn, when set, names an external SQL Server that register adds as
	// sql1 instead of the simulator (which still runs, unused). A server in
	// another container shares the staging directory with coffer:
	// stagingDir is it here, serverStagingDir as the server sees it.
	dsn, stagingDir, serverStagingDir string
	// url serves the streamer's S3 endpoint on loopback (URL mode), with
	// a certificate from the CA in DATA/ca; trustCA makes the simulator
	// trust that CA, as an operator makes SQL Server's host trust it.
	url, trustCA bool
	// caseSensitive gives the simulator a case-sensitive server
	// collation, under which Sales and sales are two databases.
	caseSensitive bool
	// logger receives every service's records (default: discarded).
	logger *slog.Logger
	// saPassword is the simulator's sa password (default Sim-Pa55!).
	saPassword string
	// token, when set, is the API token the gateway requires and the CLI
	// sends.
	token string
	// backupRate caps each BACKUP stream of the simulator, in bytes a
	// second (mssqlsim.Config.BackupRate); 0 leaves it uncapped.
	backupRate float64
	// args are more `coffer up` arguments.
	args []string
}

func startHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, data: o.data, key: o.key, traces: telemetrytest.New(t), token: o.token}
	if h.data == "" {
		h.data = t.TempDir()
	}
	if h.key == "" {
		h.key = hex.EncodeToString(vault.GenerateMasterKey())
	}
	pages := o.pages
	if pages == 0 {
		pages = 256
	}
	var trusted *x509.CertPool
	if o.trustCA {
		// the CA coffer up issues the endpoint's certificate with
		ca, err := tlsca.Ensure(filepath.Join(h.data, "ca"))
		if err != nil {
			t.Fatal(err)
		}
		trusted = ca.Pool()
	}
	sa := o.saPassword
	if sa == "" {
		sa = "Sim-Pa55!"
	}
	h.sim = mssqlsim.New(mssqlsim.Config{SAPassword: sa, DefaultPages: pages, BackupDir: t.TempDir(), Now: o.clock,
		Location: o.location, TrustedCAs: trusted, CaseSensitive: o.caseSensitive, BackupRate: o.backupRate})
	addr, err := h.sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.sim.Close() })
	h.simDSN = (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", sa), Host: addr, RawQuery: "encrypt=disable"}).String()
	h.dsn = h.simDSN
	if o.dsn != "" {
		h.dsn = o.dsn
	}

	args := []string{"--data", h.data, "--http", "127.0.0.1:0", "--workers", "2"}
	if o.stagingDir != "" {
		args = append(args, "--staging-dir", o.stagingDir, "--server-staging-dir", o.serverStagingDir)
	}
	if o.url {
		args = append(args, "--url-listen", "127.0.0.1:0")
	}
	args = append(args, o.args...)
	env := map[string]string{"COFFER_MASTER_KEY": h.key, "COFFER_API_TOKEN": o.token}
	if o.s3 {
		s3 := miniotest.Start(t)
		h.s3 = s3
		where := []string{"--s3-endpoint", s3.Endpoint, "--s3-bucket", "vault", "--s3-access-key", s3.AccessKey, "--s3-ca-file", s3.CAFile}
		args = append(args, where...)
		env["COFFER_S3_SECRET_KEY"] = s3.SecretKey
		if o.objectLock == "" {
			s3.MakeBucket(t, "vault")
		} else {
			// the bucket too is made by coffer, with Object Lock
			create := append([]string{"create", "--object-lock", o.objectLock, "--data", h.data}, where...)
			if err := runVault(t.Context(), create, func(k string) string { return env[k] }, io.Discard, io.Discard); err != nil {
				t.Fatalf("coffer vault create: %v", err)
			}
		}
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	h.up.args, h.up.env, h.up.clock, h.up.logger = args, env, o.clock, logger
	h.startStack()
	return h
}

// startStack starts coffer up as the harness was set up, until the test
// ends.
func (h *harness) startStack() {
	h.t.Helper()
	c, err := parseUpFlags(h.up.args, func(k string) string { return h.up.env[k] }, io.Discard)
	if err != nil {
		h.t.Fatal(err)
	}
	c.clock = h.up.clock
	r, err := startStack(h.t.Context(), c, io.Discard, h.up.logger, h.traces.TracerProvider())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { r.stop() })
	h.api = r.apiURL
	h.run = r
}

// coffer runs a CLI command against the harness and returns its output.
func (h *harness) coffer(args ...string) (string, error) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--api", h.api)
	if h.token != "" {
		args = append(args, "--token", h.token)
	}
	err := run(h.t.Context(), args, &out, &errOut)
	if h.transcript != nil {
		all := out.String() + errOut.String()
		if err != nil {
			all += err.Error() + "\n"
		}
		io.WriteString(h.transcript, all)
	}
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

func (h *harness) mustCoffer(args ...string) string {
	h.t.Helper()
	out, err := h.coffer(args...)
	if err != nil {
		h.t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func cofferJSON[T any](h *harness, args ...string) T {
	h.t.Helper()
	var v T
	out := h.mustCoffer(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		h.t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// eventually polls cond for up to 60 s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// register adds the simulator (or harnessOptions.dsn) as sql1 and waits
// until discovery lists the databases.
func (h *harness) register(names ...string) {
	h.t.Helper()
	h.mustCoffer("instance", "add", "sql1", "--dsn", h.dsn)
	h.eventually("discovery of the databases", func() bool {
		dbs := cofferJSON[[]gateway.Database](h, "db", "list", "sql1")
		seen := map[string]bool{}
		for _, d := range dbs {
			seen[d.Name] = true
		}
		for _, n := range names {
			if !seen[n] {
				return false
			}
		}
		return true
	})
}

// clockedHarness starts a harness whose simulator, scheduler and committer
// run on a fake clock set to start, 2026-09-06 00:00 UTC, a Sunday; the
// scheduler ticks only when the test says.
func clockedHarness(t *testing.T) (h *harness, clk *fakeClock, start time.Time) {
	t.Helper()
	start = time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)
	clk = &fakeClock{t: start}
	return startHarness(t, harnessOptions{clock: clk.Now, pages: 64}), clk, start
}

// tickAt commits a small transaction to sql1/db just before now, runs
// the scheduler's tick at now, and waits until the backups it queued are
// done.
func (h *harness) tickAt(clk *fakeClock, db string, now time.Time, before time.Duration) {
	h.t.Helper()
	clk.Set(now.Add(-before))
	if _, err := h.sim.Commit(db, 1); err != nil {
		h.t.Fatal(err)
	}
	clk.Set(now)
	if err := h.run.scheduler.Tick(h.t.Context(), now); err != nil {
		h.t.Fatalf("tick at %v: %v", now, err)
	}
	h.waitIdle(db)
}

// setPolicy stores a policy given as JSON and waits until it is in force.
func (h *harness) setPolicy(name, doc string) {
	h.t.Helper()
	file := filepath.Join(h.t.TempDir(), name+".json")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.mustCoffer("policy", "set", name, "--file", file)
	h.eventually("policy "+name, func() bool { _, err := h.coffer("policy", "show", name); return err == nil })
}

// waitIdle waits until no backup or test restore of sql1/db is queued or
// running.
func (h *harness) waitIdle(db string) {
	h.t.Helper()
	schedule := h.run.cat.Bucket(cofferv1.BucketSchedule)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st cofferv1.ScheduleState
		_, err := schedule.Get(context.Background(), catalog.Key("sql1", db), &st)
		if err == nil && st.GetPendingFullJob()+st.GetPendingLogJob()+st.GetPendingDifferentialJob()+st.GetPendingVerifyJob() == "" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("backups of %s still pending", db)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// protected creates database db on the simulator, registers it as part of
// sql1, protects it with the default policy and waits for its first full.
func (h *harness) protected(db string) {
	h.t.Helper()
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.sim.Commit(db, 4); err != nil {
		h.t.Fatal(err)
	}
	h.register(db)
	h.mustCoffer("protect", "sql1/"+db)
	h.eventually("the first full of "+db, func() bool {
		return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 1
	})
}

// exec runs a statement on sql1, as another tool would.
func (h *harness) exec(q string, args ...any) {
	h.t.Helper()
	conn, err := sql.Open("sqlserver", h.dsn)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(h.t.Context(), q, args...); err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
}

func (h *harness) jobs() []gateway.Job { return cofferJSON[[]gateway.Job](h, "jobs") }

// TestEndToEnd registers an instance with three databases (one named with
// ], ' and a trailing space), protects them, backs each up, restores each
// to a new name, and proves the restored content equals the source's as of
// the backup. The vault is in MinIO.
func TestEndToEnd(t *testing.T) {
	h := startHarness(t, harnessOptions{s3: true})
	names := []string{"Sales", "it's ]odd ", "Продажи/Q1"}
	for _, n := range names {
		if err := h.sim.CreateDatabase(n, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
		h.sim.Commit(n, 20)
	}
	h.register(names...)

	var refs []string
	for _, n := range names {
		refs = append(refs, "sql1/"+n)
	}
	h.mustCoffer(append([]string{"protect"}, refs...)...)
	// protection queues a first full of each
	h.eventually("the first full backups", func() bool {
		done := 0
		for _, j := range h.jobs() {
			if j.Kind == "backup" && j.State == "succeeded" {
				done++
			}
			if j.State == "failed" {
				t.Fatalf("job %s failed: %s", j.ID, j.Error)
			}
		}
		return done == len(names)
	})

	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			job := cofferJSON[gateway.Job](h, "backup", "sql1/"+n, "--type", "full", "--wait")
			if job.State != "succeeded" || job.RecoveryPoint == "" {
				t.Fatalf("backup job %+v", job)
			}
			rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+n)
			var rp *gateway.RecoveryPoint
			for k := range rps {
				if rps[k].ID == job.RecoveryPoint {
					rp = &rps[k]
				}
			}
			if rp == nil || rp.Type != "full" || rp.FirstLSN == "" || rp.Start == nil {
				t.Fatalf("recovery point %s not listed properly: %+v", job.RecoveryPoint, rps)
			}
			// an on-demand full carries its own retention: 45 days by default
			if !rp.OnDemand || rp.ExpiresAt == nil || rp.Finish == nil || !rp.ExpiresAt.Equal(rp.Finish.Add(45*24*time.Hour)) {
				t.Errorf("on-demand full: on_demand %v, finished %v, expires %v; want on demand, kept 45 days", rp.OnDemand, rp.Finish, rp.ExpiresAt)
			}
			want, err := h.sim.ContentHash(n, *rp.Start)
			if err != nil {
				t.Fatal(err)
			}
			// the source moves on after the backup
			h.sim.Commit(n, 10)
			if now, _ := h.sim.ContentHash(n, time.Time{}); now == want {
				t.Fatal("the source did not change after the backup")
			}
			target := n + " restored"
			rjob := cofferJSON[gateway.Job](h, "restore", "sql1/"+n, "--point", rp.ID, "--as", target, "--wait")
			if rjob.State != "succeeded" {
				t.Fatalf("restore job %+v", rjob)
			}
			got, err := h.sim.ContentHash(target, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("restored %q: content hash %s, want the source's as of the backup %s", target, got, want)
			}
		})
	}
	// an on-demand log and differential under the default policy: the log
	// is kept as the policy keeps logs (30 days), the differential, which
	// the policy does not schedule, 45 days
	for _, c := range []struct {
		typ  string
		keep time.Duration
	}{{"log", 30 * 24 * time.Hour}, {"differential", 45 * 24 * time.Hour}} {
		job := cofferJSON[gateway.Job](h, "backup", "sql1/Sales", "--type", c.typ, "--wait")
		var rp *gateway.RecoveryPoint
		for _, r := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Sales") {
			if r.ID == job.RecoveryPoint {
				rp = &r
			}
		}
		if rp == nil || rp.Type != c.typ || rp.ExpiresAt == nil || rp.Finish == nil || !rp.ExpiresAt.Equal(rp.Finish.Add(c.keep)) {
			t.Errorf("on-demand %s: %+v, want it kept %v", c.typ, rp, c.keep)
		}
	}
	// restoring onto an existing database without --overwrite is refused
	out, err := h.coffer("restore", "sql1/Sales", "--latest", "--as", "Sales", "--wait")
	if err == nil || !strings.Contains(out+err.Error(), "already exists") {
		t.Errorf("restore over an existing database: %v\n%s", err, out)
	}
}

// TestBackupIsOneTrace: an on-demand backup is one trace from the gateway
// through the scheduler and the streamer to the committer; so is a
// restore, from the gateway through the streamer to the committer.
func TestBackupIsOneTrace(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.sim.CreateDatabase("Traced", mssqlsim.DatabaseOptions{})
	h.register("Traced")
	h.mustCoffer("protect", "sql1/Traced")
	job := cofferJSON[gateway.Job](h, "backup", "sql1/Traced", "--type", "copy_only", "--wait")
	if job.State != "succeeded" {
		t.Fatalf("job %+v", job)
	}
	var root string
	for _, s := range h.traces.Named("POST /api/v1/backups") {
		root = s.SpanContext().TraceID().String()
	}
	if root == "" {
		t.Fatal("no gateway span for the backup request")
	}
	if job.TraceID != "" && job.TraceID != root {
		t.Errorf("job trace %s, gateway trace %s", job.TraceID, root)
	}
	// a span is recorded when it ends, which may be just after the job
	// is marked done: poll for them
	inTrace := func() map[string]bool {
		services := map[string]bool{}
		for _, s := range h.traces.Ended() {
			if s.SpanContext().TraceID().String() != root {
				continue
			}
			switch {
			case strings.HasPrefix(s.Name(), "process "+cofferv1.SubjectBackupOnDemand):
				services["scheduler"] = true
			case strings.HasPrefix(s.Name(), "process "+cofferv1.SubjectWorkBackup):
				services["backup-streamer"] = true
			case strings.HasPrefix(s.Name(), "process "+cofferv1.SubjectBackupStreamed):
				services["committer"] = true
			}
		}
		return services
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(inTrace()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	services := inTrace()
	for _, s := range []string{"scheduler", "backup-streamer", "committer"} {
		if !services[s] {
			t.Errorf("the %s's work is not in the backup's trace %s", s, root)
		}
	}

	// a restore is one trace too: the request, the streamer's download
	// and RESTORE statements, the committer's record of the outcome
	rjob := cofferJSON[gateway.Job](h, "restore", "sql1/Traced", "--latest", "--as", "Traced copy", "--wait")
	if rjob.State != "succeeded" {
		t.Fatalf("restore job %+v", rjob)
	}
	root = ""
	for _, s := range h.traces.Named("POST /api/v1/restores") {
		root = s.SpanContext().TraceID().String()
	}
	want := []string{"process " + cofferv1.SubjectWorkRestore, "vault download", "mssql restore", "process " + cofferv1.SubjectRestoreCompleted}
	seen := func() map[string]bool {
		names := map[string]bool{}
		for _, s := range h.traces.Ended() {
			if s.SpanContext().TraceID().String() != root {
				continue
			}
			for _, w := range want {
				if strings.HasPrefix(s.Name(), w) {
					names[w] = true
				}
			}
		}
		return names
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(seen()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := seen()
	for _, w := range want {
		if root == "" || !got[w] {
			t.Errorf("span %q is not in the restore's trace %q", w, root)
		}
	}
}

// TestBackupFailures: a connection that drops mid-backup leaves no
// recovery point and a failed job with its reason; a tampered chunk makes
// the restore refuse, naming the chunk.
func TestBackupFailures(t *testing.T) {
	h := startHarness(t, harnessOptions{pages: 2048})
	h.sim.CreateDatabase("Fragile", mssqlsim.DatabaseOptions{})
	h.sim.Commit("Fragile", 50)
	h.register("Fragile")
	h.mustCoffer("protect", "sql1/Fragile")
	h.eventually("the first full", func() bool {
		for _, j := range h.jobs() {
			if j.Kind == "backup" && j.State == "succeeded" {
				return true
			}
		}
		return false
	})
	before := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Fragile")

	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: "Fragile", AfterBytes: 4 << 20})
	out, err := h.coffer("backup", "sql1/Fragile", "--type", "full", "--wait")
	remove()
	if err == nil {
		t.Fatalf("a backup through a dropped connection succeeded:\n%s", out)
	}
	if got := exitCode(err); got != exitFailed {
		t.Errorf("a failed backup job: exit code %d; want %d", got, exitFailed)
	}
	if !strings.Contains(err.Error(), "failed:") || len(strings.TrimSpace(strings.SplitN(err.Error(), "failed:", 2)[1])) == 0 {
		t.Errorf("the failure gives no reason: %v", err)
	}
	after := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Fragile")
	if len(after) != len(before) {
		t.Errorf("recovery points: %d before, %d after a failed backup", len(before), len(after))
	}

	// tamper with every pack of the vault, inside one of its chunks: the
	// restore must refuse
	chunks := filepath.Join(h.data, "vault", "packs")
	n := 0
	filepath.WalkDir(chunks, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, rerr := os.ReadFile(p)
		if rerr != nil {
			return rerr
		}
		b[len(b)/2] ^= 0xff
		n++
		return os.WriteFile(p, b, 0o600)
	})
	if n == 0 {
		t.Fatal("no packs found to tamper with")
	}
	out, err = h.coffer("restore", "sql1/Fragile", "--latest", "--as", "Fragile copy", "--wait")
	if err == nil {
		t.Fatalf("a restore from tampered chunks succeeded:\n%s", out)
	}
	if got := exitCode(err); got != exitFailed {
		t.Errorf("a refused restore: exit code %d; want %d", got, exitFailed)
	}
	if !strings.Contains(err.Error(), "chunk") {
		t.Errorf("the refusal does not name the chunk: %v", err)
	}
	if _, herr := h.sim.ContentHash("Fragile copy", time.Time{}); herr == nil {
		t.Error("the refused restore left a database behind")
	}
}

// TestWrongMasterKey: coffer refuses to start with a key that did not
// create the vault, and says so.
func TestWrongMasterKey(t *testing.T) {
	data := t.TempDir()
	startHarness(t, harnessOptions{data: data}) // creates the vault with its own key
	wrong := hex.EncodeToString(vault.GenerateMasterKey())
	args := []string{"--data", t.TempDir(), "--http", "127.0.0.1:0", "--workers", "1", "--vault-dir", filepath.Join(data, "vault")}
	c, err := parseUpFlags(args, func(k string) string {
		if k == "COFFER_MASTER_KEY" {
			return wrong
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = startStack(t.Context(), c, io.Discard, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		t.Fatal("coffer started with the wrong master key")
	}
	if !errors.Is(err, vault.ErrWrongKey) || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("got %v, want a clear wrong-master-key error", err)
	}
	// and with no key at all for an existing vault
	c, err = parseUpFlags(append(args, "--master-key-file", filepath.Join(t.TempDir(), "missing.key")), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = startStack(context.Background(), c, io.Discard, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("got %v, want an error about the missing master key", err)
	}
}

// TestPolicyCommands: policies are created, listed, used, refused when
// invalid (naming each problem) and not deleted while in use.
func TestPolicyCommands(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.sim.CreateDatabase("Orders", mssqlsim.DatabaseOptions{})
	h.register("Orders")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"full":{"frequency":"weekly","hour":1},"differential":{"days":[0],"hour":1},"retention":{"full":"5d"}}`), 0o600)
	out, err := h.coffer("policy", "set", "bad", "--file", bad)
	if err == nil || !strings.Contains(out+err.Error(), "full.days") || !strings.Contains(err.Error(), "retention.full: 5d") {
		t.Errorf("invalid policy: %v\n%s", err, out)
	}
	good := filepath.Join(dir, "gold.json")
	os.WriteFile(good, []byte(`{"full":{"frequency":"weekly","days":[0],"hour":1},"differential":{"days":[1,2,3,4,5,6],"hour":1},
		"log":{"every":"5m"},"retention":{"full":"14d","differential":"14d","log":"7d","weekly":{"day":0,"count":4}},"compression":true}`), 0o600)
	h.mustCoffer("policy", "set", "gold", "--file", good)
	h.eventually("the policy to be stored", func() bool {
		for _, p := range cofferJSON[[]map[string]any](h, "policy", "list") {
			if p["name"] == "gold" {
				return true
			}
		}
		return false
	})
	h.mustCoffer("protect", "sql1/Orders", "--policy", "gold")
	dbs := cofferJSON[[]gateway.Database](h, "db", "list", "sql1")
	for _, d := range dbs {
		if d.Name == "Orders" && (d.Policy != "gold" || !d.Protected) {
			t.Errorf("Orders: %+v, want protected with gold", d)
		}
	}
	if out, err := h.coffer("policy", "delete", "gold"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("delete a policy in use: %v\n%s", err, out)
	}
}
