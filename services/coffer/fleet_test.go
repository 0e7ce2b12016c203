package main

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/natsauth"
	"github.com/cofferhq/coffer/pkg/natstest"
	"github.com/cofferhq/coffer/pkg/oracle"
	"github.com/cofferhq/coffer/pkg/testproc"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/gateway"
)

// fleetNoise matches what makes each failure's reason unique: ids,
// database names, addresses, LSNs.
var fleetNoise = regexp.MustCompile(`"[^"]*"|[0-9a-f]{12,}|\b[a-z]+-[0-9]{8}T[0-9]{6}-[0-9a-f]+\S*|[0-9.]+:[0-9]+|[0-9]{6,}`)

// fleetJobs is how many backup jobs the chaos test asks for.
const fleetJobs = 200

// fleetDatabases are the simulated databases under workload, backed up in
// turn; one has a name that needs quoting.
var fleetDatabases = []string{"Orders", "Ledger", "it's ]odd"}

// TestFleetChaos runs coffer as a fleet runs it: a three-node NATS
// JetStream cluster, MinIO, the simulator with databases under a workload
// and every coffer service as its own OS process (two streamers), all on
// loopback. While fleetJobs backup jobs (fulls, differentials, logs) run,
// it kills with SIGKILL and restarts each coffer service in turn, a
// streamer in the middle of a backup, one NATS node, and MinIO for a
// minute. A process that exits on its own is restarted, as an orchestrator
// would. Then it checks that every job committed or failed with a reason,
// that no recovery point is recorded twice and every chain is whole or its
// break recorded, that sampled recovery points and each database's latest
// moment restore exactly, and that after garbage collection the vault
// holds every chunk a recovery point needs and no other.
func TestFleetChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("long: make test runs it without -short")
	}
	// the long tests run side by side (make test): this one waits on
	// clocks and processes as much as it computes
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("chaos from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))

	f := startFleet(t, fleetOptions{natsNodes: 3, streamers: []string{"streamer-a", "streamer-b"}, workers: 2, secure: true})
	cluster, s3, simDSN, key, api := f.cluster, f.s3, f.simDSN, f.key, f.api
	ctx := t.Context()
	// retry calls the API until it answers, through the gateway's deaths
	retry := func(what string, call func() error) error {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			err := call()
			var ae *apiError
			if err == nil || errors.As(err, &ae) && ae.status < 500 {
				return err
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// the databases, with their workloads
	sqlDB, err := sql.Open("sqlserver", simDSN)
	must(err)
	defer sqlDB.Close()
	workloads := map[string]*oracle.Workload{}
	for _, name := range fleetDatabases {
		q := quoteIdent(name)
		_, err := sqlDB.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s ON (NAME = N'%s', FILENAME = N'%s.mdf', SIZE = 24MB)",
			q, strings.ReplaceAll(name, "'", "''"), strings.ReplaceAll(name, "'", "''")))
		must(err)
		_, err = sqlDB.ExecContext(ctx, "ALTER DATABASE "+q+" SET RECOVERY FULL")
		must(err)
		w, err := oracle.New(ctx, sqlDB, name)
		must(err)
		workloads[name] = w
	}
	must(retry("add the instance", func() error {
		return api.do(ctx, "POST", "/api/v1/instances", gateway.AddInstance{Name: "sql1", DSN: simDSN, Mode: "disk"}, nil)
	}))
	must(retry("discovery", func() error {
		var dbs []gateway.Database
		if err := api.do(ctx, "GET", "/api/v1/databases?instance=sql1", nil, &dbs); err != nil {
			return err
		}
		if len(dbs) < len(fleetDatabases) {
			return fmt.Errorf("discovered %d databases, want %d", len(dbs), len(fleetDatabases))
		}
		return nil
	}))
	for _, name := range fleetDatabases {
		must(retry("protect "+name, func() error {
			return api.do(ctx, "POST", "/api/v1/protect", gateway.DatabaseRequest{Instance: "sql1", Database: name}, nil)
		}))
	}

	// the workload runs until the chaos ends
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	for _, name := range fleetDatabases {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			w := workloads[name]
			for k := 0; ; k++ {
				select {
				case <-stopLoad:
					return
				case <-time.After(150 * time.Millisecond):
				}
				if _, err := w.Insert(ctx, 1+k%3); err != nil {
					t.Errorf("workload on %s: %v", name, err)
					return
				}
			}
		}()
	}

	// the jobs
	var submitted []string
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		rng := rand.New(rand.NewPCG(seed, 13)) // this goroutine's own
		for k := range fleetJobs {
			typ := "log"
			switch r := rng.IntN(10); {
			case r < 2:
				typ = "full"
			case r < 4:
				typ = "differential"
			}
			req := gateway.BackupRequest{Instance: "sql1", Database: fleetDatabases[k%len(fleetDatabases)], Type: typ}
			var acc gateway.Accepted
			if err := retry("backup", func() error { return api.do(ctx, "POST", "/api/v1/backups", req, &acc) }); err != nil {
				t.Errorf("job %d: %v", k, err)
				return
			}
			submitted = append(submitted, acc.JobID)
			// spread over the chaos, which takes about two and a half
			// minutes
			time.Sleep(time.Duration(600+rng.IntN(300)) * time.Millisecond)
		}
	}()

	// the chaos, one blow at a time
	var kills atomic.Int32
	pause := func(lo, hi int) { time.Sleep(time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond) }
	killRestart := func(name string) {
		p := f.proc(name)
		p.kill()
		kills.Add(1)
		t.Logf("chaos: killed %s", name)
		pause(500, 3000)
		p.start()
	}
	// midBackup waits until streamer name is in the middle of a backup,
	// SQL Server writing its staging file, and returns the job's id
	midBackup := func(name string) string {
		staging := filepath.Join(f.dir, name, "staging")
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			ents, _ := os.ReadDir(staging)
			for _, e := range ents {
				if id, ok := strings.CutSuffix(e.Name(), ".bak"); ok {
					return id
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		// the other streamer, or the retries' backoff, may have every
		// job: it is killed all the same
		t.Logf("chaos: %s ran no backup in 90 s", name)
		return ""
	}
	var orphan string
	for _, name := range []string{"committer", "streamer-a", "scheduler", "autoprotect", "discovery", "gateway", "streamer-b"} {
		pause(2000, 5000)
		if name != "streamer-a" {
			if name == "streamer-b" {
				midBackup(name)
			}
			killRestart(name)
			continue
		}
		// streamer-a stays down until the other streamer has finished
		// the job it was running
		orphan = midBackup(name)
		p := f.proc(name)
		p.kill()
		kills.Add(1)
		t.Logf("chaos: killed %s in the middle of job %s", name, orphan)
		if orphan != "" {
			j := waitJob(t, api, orphan)
			if j.State != "succeeded" {
				t.Errorf("job %s, whose streamer was killed mid-backup, ended %s: %s %s", orphan, j.State, j.Error, j.Detail)
			} else {
				t.Logf("chaos: the other streamer finished job %s", orphan)
			}
		}
		p.start()
	}
	pause(1000, 3000)
	node := rng.IntN(cluster.Size())
	cluster.Kill(node)
	kills.Add(1)
	t.Logf("chaos: killed NATS node %d", node+1)
	pause(2000, 5000)
	cluster.Restart(t, node)
	pause(1000, 3000)
	s3.Kill()
	kills.Add(1)
	t.Logf("chaos: MinIO down for 60 s")
	time.Sleep(60 * time.Second)
	s3.Restart(t)
	<-jobsDone
	close(stopLoad)
	loadWG.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// every job ends
	var jobs []gateway.Job
	deadline := time.Now().Add(6 * time.Minute)
	for {
		must(retry("list jobs", func() error { return api.do(ctx, "GET", "/api/v1/jobs", nil, &jobs) }))
		var open []string
		for _, j := range jobs {
			if !j.Done() {
				open = append(open, fmt.Sprintf("%s (%s %s %s, %s)", j.ID, j.Kind, j.BackupType, j.State, j.Step))
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs never ended: %s", len(open), strings.Join(open, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
	byID := map[string]gateway.Job{}
	committed, failed := 0, 0
	reasons := map[string]int{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	for _, id := range submitted {
		j, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("job %s was accepted but has no record", id)
		case j.State == "succeeded" && j.RecoveryPoint != "":
			committed++
		case j.State == "failed" && (j.Error != "" || j.Detail != ""):
			failed++
			// the reason's kind: without the ids, names and addresses
			// that make each one unique
			reason := fleetNoise.ReplaceAllString(j.Error+j.Detail, "…")
			if len(reason) > 120 {
				reason = reason[:120] + "…"
			}
			reasons[reason]++
		default:
			t.Errorf("job %s ended %s with neither a recovery point nor a reason: %+v", id, j.State, j)
		}
	}

	// recovery points: none twice, every chain whole or its break recorded
	var rps []gateway.RecoveryPoint
	must(retry("list recovery points", func() error { return api.do(ctx, "GET", "/api/v1/recovery-points?instance=sql1", nil, &rps) }))
	seen := map[string]string{}
	for _, rp := range rps {
		for _, k := range []string{"id " + rp.ID, fmt.Sprintf("%s %s %s-%s", rp.Database, rp.Type, rp.FirstLSN, rp.LastLSN)} {
			if other, dup := seen[k]; dup {
				t.Errorf("recovery point recorded twice: %s (jobs %s and %s)", k, other, rp.JobID)
			}
			seen[k] = rp.JobID
		}
		if j, ok := byID[rp.JobID]; ok && j.Kind == "backup" && j.RecoveryPoint != rp.ID {
			t.Errorf("recovery point %s names job %s, which names %q", rp.ID, rp.JobID, j.RecoveryPoint)
		}
	}
	breaks := 0
	for _, name := range fleetDatabases {
		breaks += checkChain(t, api, name, rps)
	}
	why := map[string]int{}
	for _, rp := range rps {
		if r := rp.HealsBreak + rp.ChainBreak; r != "" {
			why[fleetNoise.ReplaceAllString(r, "…")]++
		}
	}
	for r, n := range why {
		t.Logf("fleet: %d chain breaks: %s", n, r)
	}
	t.Logf("fleet: %d jobs asked, %d kills, %d committed, %d failed visibly; %d recovery points, %d chain breaks healed or recorded; %d process deaths restarted by the supervisor",
		len(submitted), kills.Load(), committed, failed, len(rps), breaks, f.unplanned.Load())
	for r, n := range reasons {
		t.Logf("fleet: %d failed: %s", n, r)
	}
	for _, p := range f.procs {
		p.mu.Lock()
		if n := p.unplanned.Load(); n > 0 {
			t.Logf("fleet: %s exited on its own %d times, last: %s", p.name, n, p.lastExit)
		}
		p.mu.Unlock()
	}
	if committed < fleetJobs/2 {
		t.Errorf("only %d of %d jobs committed", committed, fleetJobs)
	}

	// restores: two sampled recovery points and the latest moment of each
	// database, each checked against its workload
	restored := 0
	points := map[string]gateway.RecoveryPoint{}
	for _, rp := range rps {
		points[rp.ID] = rp
	}
	for _, name := range fleetDatabases {
		var mine []gateway.RecoveryPoint
		for _, rp := range rps {
			if rp.Database == name && !rp.CopyOnly {
				mine = append(mine, rp)
			}
		}
		if len(mine) == 0 {
			t.Errorf("%s has no recovery point", name)
			continue
		}
		reqs := []gateway.RestoreRequest{{Latest: true}}
		for range 2 {
			reqs = append(reqs, gateway.RestoreRequest{Point: mine[rng.IntN(len(mine))].ID})
		}
		for k, req := range reqs {
			req.Instance, req.Database = "sql1", name
			req.TargetDatabase = fmt.Sprintf("%s_r%d", name, k)
			var acc gateway.Accepted
			must(retry("restore", func() error { return api.do(ctx, "POST", "/api/v1/restores", req, &acc) }))
			j := waitJob(t, api, acc.JobID)
			if j.State != "succeeded" {
				t.Errorf("restore of %s (%+v) %s: %s %s", name, req, j.State, j.Error, j.Detail)
				continue
			}
			if acc.At == nil {
				t.Errorf("restore of %s (%+v): the plan names no moment", name, req)
				continue
			}
			w := workloads[name]
			// the end of a backup holds what committed before it started,
			// and may hold what committed while it ran
			from, to := *acc.At, *acc.At
			if rp, ok := points[req.Point]; ok && rp.Start != nil && rp.Finish != nil {
				from, to = *rp.Start, *rp.Finish
			}
			if req.Latest {
				// every backup whole, as of the last range's end: a log's
				// start, or the finish of a full, a differential or a log
				// with bulk-logged changes; the last backup may hold what
				// committed while it ran, and a full or differential, which
				// the simulator takes as it starts, no more than what
				// committed before it started
				for _, rp := range mine {
					if rp.Finish == nil || rp.Start == nil {
						continue
					}
					if rp.Finish.After(to) {
						to = *rp.Finish
					}
					if rp.Finish.Equal(*acc.At) {
						from = *rp.Start
					}
				}
			}
			if err := w.CheckBetween(ctx, sqlDB, req.TargetDatabase, w.ServerTime(from), w.ServerTime(to)); err != nil {
				t.Errorf("restore of %s as of %v (%+v): %v", name, acc.At, req, err)
				continue
			}
			restored++
		}
	}
	t.Logf("fleet: %d restores exact", restored)

	// garbage collection, with every service stopped: afterwards the
	// vault holds what the recovery points need, all of it, and no more
	f.stop()
	store, err := daemon.VaultStore{S3Endpoint: s3.Endpoint, S3Bucket: "vault", S3AccessKey: s3.AccessKey, S3SecretKey: s3.SecretKey, S3CAFile: s3.CAFile}.Open()
	must(err)
	master, err := vault.ParseMasterKey(key)
	must(err)
	v, err := vault.Open(ctx, store, master)
	must(err)
	// drafts left by killed attempts are old news: every job has ended
	opts := vault.CollectOptions{DraftTTL: time.Nanosecond}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		_, err := v.Collect(ctx, opts)
		must(err)
		rep, err := v.Check(ctx, vault.CheckOptions{Mode: vault.CheckFast})
		must(err)
		if !rep.OK() {
			t.Fatalf("after garbage collection the vault is damaged: %+v", rep.Damaged)
		}
		if rep.Unreferenced == 0 {
			t.Logf("fleet: after garbage collection %d manifests need %d chunks, all there, none left over", rep.Manifests, rep.Chunks)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after garbage collection %d chunks remain that no recovery point needs", rep.Unreferenced)
		}
		time.Sleep(time.Second) // a dead writer's session runs out
	}
}

// checkChain checks the chains of database by SQL Server's rules, apart
// from coffer's own analysis: a log continues the log that ended where it
// starts, or a full or differential whose last LSN it covers; a log that
// does neither must say why its chain is broken. Every break between two
// of the database's recovery ranges must be explained too. It returns the
// breaks recorded (on logs, and on fulls that healed one).
func checkChain(t *testing.T, api *apiClient, database string, rps []gateway.RecoveryPoint) int {
	t.Helper()
	var mine []gateway.RecoveryPoint
	for _, rp := range rps {
		if rp.Database == database && !rp.CopyOnly {
			mine = append(mine, rp)
		}
	}
	breaks := 0
	for _, rp := range mine {
		if rp.Type == "full" && rp.HealsBreak != "" {
			breaks++
		}
		if rp.Type != "log" {
			continue
		}
		if rp.ChainBreak != "" {
			breaks++
			continue
		}
		continues := false
		for _, p := range mine {
			switch p.Type {
			case "log":
				continues = continues || p.ID != rp.ID && p.LastLSN == rp.FirstLSN
			case "full", "differential":
				continues = continues || lsnLE(rp.FirstLSN, p.LastLSN) && lsnLess(p.LastLSN, rp.LastLSN)
			}
		}
		if !continues {
			t.Errorf("%s: log %s (LSN %s to %s) continues no log, full or differential, and no break is recorded", database, rp.ID, rp.FirstLSN, rp.LastLSN)
		}
	}
	var ranges []gateway.RecoveryRange
	if err := api.do(t.Context(), "GET", "/api/v1/recovery-ranges?instance=sql1&database="+url.QueryEscape(database), nil, &ranges); err != nil {
		t.Errorf("%s: recovery ranges: %v", database, err)
	}
	for k := 0; k+1 < len(ranges); k++ {
		if ranges[k].Break == "" {
			t.Errorf("%s: the recovery ranges stop at %v and start again at %v with no reason given", database, ranges[k].To, ranges[k+1].From)
		}
	}
	return breaks
}

// waitJob polls job id until it ends, for up to five minutes.
func waitJob(t testing.TB, api *apiClient, id string) gateway.Job {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var j gateway.Job
		err := api.do(t.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(id), nil, &j)
		if err == nil && j.Done() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end: %+v (%v)", id, j, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fleetOptions shape a fleet.
type fleetOptions struct {
	natsNodes int
	// streamers name the streamer processes, each with workers workers.
	streamers []string
	workers   int
	// simArgs are more flags of `coffer sim`.
	simArgs []string
	// secure runs NATS as docs/security.md deploys it: TLS, and each
	// service connecting as its own user with only its permissions.
	secure bool
}

// startFleet starts, each as its own process on loopback, a NATS cluster
// of o.natsNodes nodes, MinIO, the simulator and every coffer service
// (o.streamers streamers), restarting a service that exits on its own,
// and returns once they are started.
func startFleet(tb testing.TB, o fleetOptions) *fleet {
	tb.Helper()
	bins := buildFleet(tb)
	f := &fleet{t: tb, dir: tb.TempDir(), bins: bins}
	var natsOpts natstest.Options
	userEnv := func(string) []string { return nil }
	if o.secure {
		natsOpts.Config, userEnv = secureNATS(tb, bins, f.dir)
	}
	f.cluster = natstest.StartClusterWith(tb, o.natsNodes, natsOpts)
	f.s3 = miniotest.Start(tb)
	f.s3.MakeBucket(tb, "vault")
	f.simDSN = f.startSim(o.simArgs...)
	f.key = hex.EncodeToString(vault.GenerateMasterKey())
	ports, err := testproc.FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	common := []string{
		"COFFER_NATS_URL=" + f.cluster.URL(),
		fmt.Sprintf("COFFER_NATS_REPLICAS=%d", o.natsNodes),
		"COFFER_METRICS_ADDR=127.0.0.1:0", // every service of the fleet on one host
	}
	// each service gets what docs/deploy.md gives it and nothing more: the
	// master key to those that need it, the vault to those that use it
	key := []string{"COFFER_MASTER_KEY=" + f.key}
	vaultEnv := []string{
		"COFFER_S3_ENDPOINT=" + f.s3.Endpoint, "COFFER_S3_BUCKET=vault",
		"COFFER_S3_ACCESS_KEY=" + f.s3.AccessKey, "COFFER_S3_SECRET_KEY=" + f.s3.SecretKey, "COFFER_S3_CA_FILE=" + f.s3.CAFile,
	}
	env := func(service string, more ...[]string) []string {
		out := append(slices.Clone(common), userEnv(service)...)
		for _, m := range more {
			out = append(out, m...)
		}
		return out
	}
	// the committer first: it initialises the vault the others open
	f.add("committer", "committer", env("committer", key, vaultEnv))
	f.add("discovery", "discovery", env("discovery", key))
	f.add("scheduler", "scheduler", env("scheduler"))
	f.add("autoprotect", "autoprotect", env("autoprotect"))
	f.add("gateway", "gateway", env("gateway", key, []string{"COFFER_HTTP_ADDR=" + apiAddr}))
	for _, name := range o.streamers {
		staging := filepath.Join(f.dir, name, "staging")
		if err := os.MkdirAll(staging, 0o700); err != nil {
			tb.Fatal(err)
		}
		// a job whose streamer died goes to another after 30 s, not 2 min
		f.add(name, "backup-streamer", env("backup-streamer", key, vaultEnv, []string{"COFFER_STAGING_DIR=" + staging,
			fmt.Sprintf("COFFER_STREAMER_WORKERS=%d", o.workers), "COFFER_STREAMER_ACK_WAIT=30s",
			// a streamer killed mid-backup leaves its vault session
			// behind; a short lease lets garbage collection take it for
			// dead soon
			"COFFER_VAULT_SESSION_REFRESH=1s"}))
	}
	for _, p := range f.procs {
		p.start()
	}
	go f.supervise()
	tb.Cleanup(f.stop)
	f.api = newAPIClient("http://"+apiAddr, "")
	return f
}

// secureNATS runs `coffer nats config --tls-hosts 127.0.0.1` into dir, as
// docs/security.md has an operator do: a seed per service, nats-server's
// certificate from coffer's CA. It returns the configuration it printed,
// which every node adds (the users and the tls block), and each service's
// environment: its own seed and the CA.
func secureNATS(tb testing.TB, bins, dir string) (string, func(service string) []string) {
	tb.Helper()
	creds := filepath.Join(dir, "nats")
	cmd := exec.Command(filepath.Join(bins, "coffer"), "nats", "config", "--dir", creds, "--tls-hosts", "127.0.0.1,localhost",
		"--ca-dir", filepath.Join(dir, "ca"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	conf, err := cmd.Output()
	if err != nil {
		tb.Fatalf("coffer nats config: %v\n%s", err, stderr.String())
	}
	return string(conf), func(service string) []string {
		return []string{"COFFER_NATS_NKEY_FILE=" + filepath.Join(creds, natsauth.SeedFile(service)),
			"COFFER_NATS_CA_FILE=" + filepath.Join(creds, tlsca.CertFile)}
	}
}

// buildFleet builds coffer's binaries, the services and the coffer command
// (the simulator), into a directory it returns.
func buildFleet(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	pkgs := []string{"github.com/cofferhq/coffer/services/coffer"}
	for _, s := range []string{"committer", "discovery", "scheduler", "autoprotect", "gateway", "backup-streamer"} {
		pkgs = append(pkgs, "github.com/cofferhq/coffer/services/"+s+"/cmd/"+s)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// fleet is coffer's services, each its own OS process, and what they run
// against.
type fleet struct {
	t         testing.TB
	dir, bins string
	cluster   *natstest.Cluster
	s3        *miniotest.Server
	simDSN    string
	key       string // the master key, hex
	api       *apiClient
	procs     []*fleetProc
	// unplanned counts the processes that exited on their own and were
	// started again.
	unplanned atomic.Int32
	stopping  atomic.Bool
	simOut    *testproc.Buffer
}

// fleetProc is one service process, started again after each kill.
type fleetProc struct {
	name string
	path string
	args []string
	env  []string
	log  *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	killed  bool // the last exit was the test's doing
	started time.Time
	// unplanned counts the exits that were not the test's doing, the last
	// one's status in lastExit (read once the processes are stopped).
	unplanned atomic.Int32
	lastExit  string
}

func (f *fleet) add(name, bin string, env []string) *fleetProc {
	log, err := os.Create(filepath.Join(f.dir, name+".log"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { log.Close() })
	p := &fleetProc{name: name, path: filepath.Join(f.bins, bin), env: append(os.Environ(), env...), log: log}
	f.procs = append(f.procs, p)
	return p
}

func (f *fleet) proc(name string) *fleetProc {
	for _, p := range f.procs {
		if p.name == name {
			return p
		}
	}
	f.t.Fatalf("no process %s", name)
	return nil
}

// startSim starts the simulator as its own process and returns its DSN.
func (f *fleet) startSim(args ...string) string {
	ports, err := testproc.FreePorts(1)
	if err != nil {
		f.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(filepath.Join(f.bins, "coffer"), append([]string{"sim", "--addr", addr, "--sa-password", "Fleet-Pa55!"}, args...)...)
	f.simOut = new(testproc.Buffer)
	cmd.Stdout, cmd.Stderr = f.simOut, f.simOut
	cmd.SysProcAttr = testproc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	dsn := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Fleet-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("sqlserver", dsn)
		if err == nil {
			err = db.PingContext(f.t.Context())
			db.Close()
		}
		if err == nil {
			return dsn
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("simulator not up: %v\n%s", err, f.simOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start starts the process; it does nothing if it runs.
func (p *fleetProc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = testproc.SysProcAttr()
	fmt.Fprintf(p.log, "--- fleet: start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(p.log, "--- fleet: start failed: %v\n", err)
		return
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.cmd, p.done, p.killed, p.started = cmd, done, false, time.Now()
}

// kill kills the process with SIGKILL and waits for it to exit.
func (p *fleetProc) kill() { p.signal(syscall.SIGKILL) }

func (p *fleetProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.killed = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	p.mu.Lock()
	if p.cmd == cmd {
		p.cmd = nil
		fmt.Fprintf(p.log, "--- fleet: %s ended by %v: %v\n", p.name, sig, cmd.ProcessState)
	}
	p.mu.Unlock()
}

// supervise starts again, after a second, a process that exited without
// the test killing it (one that could not reach MinIO at start, say), as
// Kubernetes restarts a container that exits.
func (f *fleet) supervise() {
	for !f.stopping.Load() {
		for _, p := range f.procs {
			p.mu.Lock()
			exited := false
			if p.cmd != nil {
				select {
				case <-p.done:
					if exited = !p.killed; exited {
						fmt.Fprintf(p.log, "--- fleet: %s exited on its own: %v\n", p.name, p.cmd.ProcessState)
						p.unplanned.Add(1)
						p.lastExit = p.cmd.ProcessState.String() + ", after: " + lastLine(p.log.Name())
						p.cmd = nil
					}
				default:
				}
			}
			p.mu.Unlock()
			if exited && !f.stopping.Load() {
				f.unplanned.Add(1)
				time.Sleep(time.Second)
				p.start()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLine is the last line a process wrote to its log before the
// harness's own, for its reason to exit.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for k := len(lines) - 1; k >= 0; k-- {
		if !strings.HasPrefix(lines[k], "--- fleet:") {
			return lines[k]
		}
	}
	return ""
}

// stop ends every process with SIGTERM and, if the test failed, shows the
// end of each one's log.
func (f *fleet) stop() {
	if f.stopping.Swap(true) {
		return
	}
	var wg sync.WaitGroup
	for _, p := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.signal(syscall.SIGTERM)
		}()
	}
	wg.Wait()
	if f.t.Failed() {
		for _, p := range f.procs {
			b, _ := os.ReadFile(p.log.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			f.t.Logf("--- %s log (end):\n%s", p.name, b)
		}
	}
}

// BenchmarkStreamers measures how long a queue of equal full backups
// takes with one streamer, then with two, each streamer a process of its
// own with one worker (scaled by adding workers, as KEDA does), on a
// fleet of processes as TestFleetChaos runs it. It reports each queue's
// seconds and, on the second, the ratio of the two. The simulator reads
// each backup at 40 MB/s, as a server's disks would: on this two-core
// machine, where the simulator, MinIO and the streamers share the CPU,
// a backup without it is bound by the CPU, which a second streamer
// cannot add.
func BenchmarkStreamers(b *testing.B) {
	const databases, sizeMB, rateMB = 6, 64, 40
	var one time.Duration
	for _, streamers := range [][]string{{"streamer-a"}, {"streamer-a", "streamer-b"}} {
		b.Run(fmt.Sprintf("streamers=%d", len(streamers)), func(b *testing.B) {
			f := startFleet(b, fleetOptions{natsNodes: 1, streamers: streamers, workers: 1,
				simArgs: []string{"--backup-rate", fmt.Sprint(rateMB)}})
			ctx := b.Context()
			var names []string
			for k := range databases {
				names = append(names, fmt.Sprintf("Equal%d", k))
			}
			f.protectDatabases(names, sizeMB)
			var took time.Duration
			for b.Loop() {
				start := time.Now()
				var ids []string
				for _, name := range names {
					var acc gateway.Accepted
					req := gateway.BackupRequest{Instance: "sql1", Database: name, Type: "full"}
					if err := f.api.do(ctx, "POST", "/api/v1/backups", req, &acc); err != nil {
						b.Fatal(err)
					}
					ids = append(ids, acc.JobID)
				}
				for _, id := range ids {
					if j := waitJob(b, f.api, id); j.State != "succeeded" {
						b.Fatalf("job %s %s: %s %s", id, j.State, j.Error, j.Detail)
					}
				}
				took = time.Since(start)
			}
			b.ReportMetric(took.Seconds(), "queue-s")
			b.ReportMetric(float64(databases*sizeMB)/took.Seconds(), "MB/s")
			if len(streamers) == 1 {
				one = took
			} else if one > 0 {
				b.ReportMetric(took.Seconds()/one.Seconds(), "time-vs-one-streamer")
			}
		})
	}
}

// protectDatabases creates databases of sizeMB on the simulator, registers
// the simulator as sql1, protects them and waits for their first fulls.
func (f *fleet) protectDatabases(names []string, sizeMB int) {
	t := f.t
	t.Helper()
	ctx := t.Context()
	db, err := sql.Open("sqlserver", f.simDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range names {
		lit := strings.ReplaceAll(name, "'", "''")
		for _, q := range []string{
			fmt.Sprintf("CREATE DATABASE %s ON (NAME = N'%s', FILENAME = N'%s.mdf', SIZE = %dMB)", quoteIdent(name), lit, lit, sizeMB),
			"ALTER DATABASE " + quoteIdent(name) + " SET RECOVERY FULL",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	f.eventually("the instance added", func() error {
		return f.api.do(ctx, "POST", "/api/v1/instances", gateway.AddInstance{Name: "sql1", DSN: f.simDSN, Mode: "disk"}, nil)
	})
	f.eventually("discovery", func() error {
		var dbs []gateway.Database
		if err := f.api.do(ctx, "GET", "/api/v1/databases?instance=sql1", nil, &dbs); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, d := range dbs {
			seen[d.Name] = true
		}
		for _, n := range names {
			if !seen[n] {
				return fmt.Errorf("%s not discovered yet", n)
			}
		}
		return nil
	})
	for _, name := range names {
		f.eventually("protect "+name, func() error {
			return f.api.do(ctx, "POST", "/api/v1/protect", gateway.DatabaseRequest{Instance: "sql1", Database: name}, nil)
		})
	}
	for _, name := range names {
		f.eventually("the first full of "+name, func() error {
			var rps []gateway.RecoveryPoint
			if err := f.api.do(ctx, "GET", "/api/v1/recovery-points?instance=sql1&database="+url.QueryEscape(name), nil, &rps); err != nil {
				return err
			}
			if len(rps) == 0 {
				return errors.New("none yet")
			}
			return nil
		})
	}
}

// eventually calls call until it succeeds, for up to three minutes: the
// API may not be up yet, or restarting.
func (f *fleet) eventually(what string, call func() error) {
	f.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := call()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || f.t.Context().Err() != nil {
			f.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
