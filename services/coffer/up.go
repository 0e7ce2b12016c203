package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/autoprotect"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
	"github.com/cofferhq/coffer/services/committer"
	"github.com/cofferhq/coffer/services/discovery"
	"github.com/cofferhq/coffer/services/gateway"
	"github.com/cofferhq/coffer/services/scheduler"
)

// upConfig is the configuration of `coffer up`.
type upConfig struct {
	dataDir       string
	httpAddr      string
	demo          bool
	masterKeyFile string
	natsListen    string
	workers       int
	token         string
	store         daemon.VaultStore
	// clock, when set, replaces the real clock of the scheduler and the
	// committer, whose ticks then come only from the caller (tests that
	// drive weeks of schedule).
	clock func() time.Time
	// stagingDir, when set, replaces DATA/staging as the directory shared
	// with SQL Server, and serverStagingDir names it as SQL Server sees it
	// (tests against a SQL Server in another container).
	stagingDir, serverStagingDir string
	// s3Addr, when set, is where the streamer serves its S3 endpoint (URL
	// mode for SQL Server 2022 and later); s3Advertise is the host:port
	// SQL Server reaches it at.
	s3Addr, s3Advertise string
	// ca is the CA that issues the endpoint's certificate (DATA/ca);
	// loaded when URL mode is on.
	ca *tlsca.CA
}

func parseUpFlags(args []string, getenv func(string) string, stderr io.Writer) (*upConfig, error) {
	c := &upConfig{}
	fs := flag.NewFlagSet("coffer up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dataDir, "data", defaultDataDir(getenv), "directory for NATS, the local vault, staging and the master key (COFFER_DATA)")
	fs.StringVar(&c.httpAddr, "http", "127.0.0.1:8080", "address of the API and dashboard")
	fs.BoolVar(&c.demo, "demo", false, "also run a simulated SQL Server with sample databases, registered as sql1 with auto-protection on")
	fs.StringVar(&c.masterKeyFile, "master-key-file", getenv("COFFER_MASTER_KEY_FILE"), "file holding the master key (default DATA/master.key, created on first start)")
	fs.StringVar(&c.natsListen, "nats", "", "also serve NATS on this address (e.g. 127.0.0.1:4222) for services in other processes")
	fs.IntVar(&c.workers, "workers", 2, "backup and restore jobs run at once")
	fs.StringVar(&c.token, "token", getenv("COFFER_API_TOKEN"), "require this API token (COFFER_API_TOKEN)")
	fs.StringVar(&c.s3Addr, "url-listen", getenv("COFFER_URL_LISTEN"), "serve the S3 endpoint SQL Server 2022 backs up to and restores from (URL mode) on this address, e.g. :9443 (COFFER_URL_LISTEN; with --demo 127.0.0.1:0); without it every instance uses disk mode")
	fs.StringVar(&c.s3Advertise, "url-advertise", getenv("COFFER_URL_ADVERTISE"), "host:port SQL Server reaches the S3 endpoint at (COFFER_URL_ADVERTISE; default the listening address)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.store = c.vaultStore(getenv)
	if c.s3Addr == "" && c.demo {
		// the demo's simulated SQL Server 2022 backs up to the streamer
		c.s3Addr = "127.0.0.1:0"
	}
	var errs []error
	if c.workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.dataDir == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	return c, errors.Join(errs...)
}

// defaultDataDir is COFFER_DATA, else ~/.coffer.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("COFFER_DATA"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".coffer")
}

// vaultStore is where the vault is: COFFER_VAULT_DIR or COFFER_S3_*, else
// DATA/vault.
func (c *upConfig) vaultStore(getenv func(string) string) daemon.VaultStore {
	s := daemon.VaultStoreFromEnv(getenv)
	if s.Dir == "" && s.S3Endpoint == "" {
		s.Dir = filepath.Join(c.dataDir, "vault")
	}
	return s
}

// masterKey finds the master key: COFFER_MASTER_KEY, the key file, or, on a
// first start with no vault yet, a new key written to DATA/master.key.
func (c *upConfig) masterKey(getenv func(string) string, vaultExists bool, stdout io.Writer) ([]byte, error) {
	if getenv("COFFER_MASTER_KEY") != "" {
		return daemon.MasterKey(getenv)
	}
	file := c.masterKeyFile
	if file == "" {
		file = filepath.Join(c.dataDir, "master.key")
	}
	b, err := os.ReadFile(file)
	if err == nil {
		k, err := vault.ParseMasterKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("master key file %s: %w", file, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	if vaultExists || c.masterKeyFile != "" {
		return nil, fmt.Errorf("master key file %s does not exist: the vault needs the key it was created with (COFFER_MASTER_KEY or --master-key-file)", file)
	}
	k := vault.GenerateMasterKey()
	if err := os.WriteFile(file, []byte(fmt.Sprintf("%x\n", k)), 0o600); err != nil {
		return nil, fmt.Errorf("write new master key: %w", err)
	}
	fmt.Fprintf(stdout, "coffer: created a new master key in %s — keep a copy somewhere safe: without it no backup can be restored\n", file)
	return k, nil
}

// stack is every service of coffer running in one process.
type stack struct {
	gateway   *gateway.Service
	disc      *discovery.Service
	scheduler *scheduler.Service
	committer *committer.Service
	cat       *catalog.Catalog
	metrics   *metrics.Metrics // the whole process's, served on the gateway's /metrics
	runs      []func(context.Context) error
	names     []string
}

// runUp runs every service in one process with an embedded NATS server.
func runUp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseUpFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	for _, d := range []string{c.dataDir, filepath.Join(c.dataDir, "staging")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	logFile, err := os.OpenFile(filepath.Join(c.dataDir, "coffer.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger := telemetry.NewLogger(logFile, slog.LevelInfo)

	tcfg := telemetry.FromEnv(getenv)
	if tcfg.ServiceName == "" {
		tcfg.ServiceName = "coffer"
	}
	shutdownTracing, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdownTracing(sctx)
	}()

	r, err := startStack(ctx, c, getenv, stdout, logger, otel.GetTracerProvider())
	if err != nil {
		return err
	}
	defer r.stop()
	apiURL := r.apiURL

	var sim *mssqlsim.Instance
	if c.demo {
		sim, err = startDemoInstance(ctx, c, apiURL, logger, stdout)
		if err != nil {
			return err
		}
		defer func() {
			sim.Close()
			if err := sim.Save(filepath.Join(c.dataDir, "sim", "state.gob")); err != nil {
				logger.Error("save simulator state", "err", err)
			}
		}()
	}
	fmt.Fprintf(stdout, `coffer is up.
  API and dashboard  %s
  data               %s (logs in coffer.log)
  vault              %s

Try:
  coffer instance list
  coffer db list
  coffer backup sql1/Sales --type full --wait
  coffer rp list sql1/Sales
  coffer restore sql1/Sales --latest --as Sales_copy --wait
  coffer jobs

Stop with Ctrl-C.
`, apiURL, c.dataDir, vaultWhere(c.store))
	if c.ca != nil {
		fmt.Fprintf(stdout, "S3 endpoint: SQL Server 2022 and later back up to https://%s with no staging (older versions use %s).\n"+
			"  Make SQL Server trust %s: on Linux copy it to /var/opt/mssql/security/ca-certificates/coffer-ca.crt (only .crt files\n"+
			"  are read) and restart SQL Server; on Windows import it into the machine's Trusted Root Certification Authorities\n"+
			"  (docs/url-mode.md).\n",
			c.s3Advertise, filepath.Join(c.dataDir, "staging"), filepath.Join(c.dataDir, "ca", tlsca.CertFile))
	}
	if !c.demo {
		fmt.Fprintf(stdout, "Register a SQL Server first: coffer instance add NAME --dsn 'sqlserver://user:password@host:1433'\n")
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-r.errc:
		logger.Error("service failed", "err", runErr)
	}
	fmt.Fprintln(stdout, "coffer: stopping")
	return errors.Join(runErr, r.stop())
}

// running is a started stack.
type running struct {
	apiURL    string
	disc      *discovery.Service
	scheduler *scheduler.Service
	committer *committer.Service
	cat       *catalog.Catalog
	vault     *vault.Vault
	// nc is the services' NATS connection (tests listen on it).
	nc *nats.Conn
	// errc receives the error of a service that stopped on its own.
	errc chan error
	stop func() error
}

// startStack opens the vault, starts the embedded NATS server and every
// service, and returns once the API listens.
func startStack(ctx context.Context, c *upConfig, getenv func(string) string, stdout io.Writer, logger *slog.Logger, tp trace.TracerProvider) (*running, error) {
	store, err := c.store.Open()
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(filepath.Join(c.store.Dir, "keys"))
	key, err := c.masterKey(getenv, c.store.Dir != "" && statErr == nil, stdout)
	if err != nil {
		return nil, err
	}
	v, err := daemon.OpenVault(ctx, store, key, true)
	if err != nil {
		return nil, err
	}
	opts := bus.Options{StoreDir: filepath.Join(c.dataDir, "nats")}
	if c.natsListen != "" {
		u, err := url.Parse("nats://" + c.natsListen)
		if err != nil {
			return nil, fmt.Errorf("--nats: %w", err)
		}
		opts.Host = u.Hostname()
		fmt.Sscan(u.Port(), &opts.Port)
	}
	emb, err := bus.StartEmbedded(opts)
	if err != nil {
		return nil, fmt.Errorf("start NATS: %w", err)
	}
	nc, err := emb.Connect("coffer-up")
	if err != nil {
		emb.Shutdown()
		return nil, err
	}
	st, err := buildStack(ctx, nc, v, key, c, logger, tp)
	if err == nil {
		err = st.gateway.Listen()
	}
	if err != nil {
		nc.Close()
		emb.Shutdown()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r := &running{apiURL: "http://" + st.gateway.Addr(), disc: st.disc, scheduler: st.scheduler, committer: st.committer, cat: st.cat, vault: v, nc: nc,
		errc: make(chan error, len(st.runs))}
	var wg sync.WaitGroup
	for k, run := range st.runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil {
				r.errc <- fmt.Errorf("%s: %w", st.names[k], err)
			}
		}()
	}
	var once sync.Once
	r.stop = func() error {
		once.Do(func() {
			cancel()
			wg.Wait()
			nc.Close()
			emb.Shutdown()
		})
		return nil
	}
	return r, nil
}

func vaultWhere(s daemon.VaultStore) string {
	if s.S3Endpoint != "" {
		return "s3://" + s.S3Endpoint + "/" + s.S3Bucket + "/" + s.S3Prefix
	}
	return s.Dir
}

// buildStack creates every service over one NATS connection. Each service
// has its own bus, so a poison message is reported as its own.
func buildStack(ctx context.Context, nc *nats.Conn, v *vault.Vault, key []byte, c *upConfig, logger *slog.Logger, tp trace.TracerProvider) (*stack, error) {
	st := &stack{metrics: metrics.New()}
	var cat *catalog.Catalog
	newBus := func(name string) (*bus.Bus, error) {
		b, err := daemon.NewBus(nc, name, logger.With("service", name), tp)
		if err != nil {
			return nil, err
		}
		st.metrics.WatchConsumers(b)
		if cat == nil {
			if cat, err = topology.Setup(ctx, b); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	add := func(name string, run func(context.Context) error) {
		st.names = append(st.names, name)
		st.runs = append(st.runs, run)
	}
	lg := func(name string) *slog.Logger { return logger.With("service", name) }

	b, err := newBus("committer")
	if err != nil {
		return nil, err
	}
	ccfg := committer.Config{Logger: lg("committer"), TracerProvider: tp, Metrics: st.metrics}
	scfg := scheduler.Config{Logger: lg("scheduler"), TracerProvider: tp, Metrics: st.metrics}
	if c.clock != nil {
		ccfg.Now, ccfg.GCTicks = c.clock, make(chan time.Time)
		scfg.Now, scfg.Ticks = c.clock, make(chan time.Time)
	}
	com, err := committer.New(b, cat, v, ccfg)
	if err != nil {
		return nil, err
	}
	st.committer = com
	add("committer", com.Run)

	if b, err = newBus("backup-streamer"); err != nil {
		return nil, err
	}
	staging := c.stagingDir
	if staging == "" {
		staging = filepath.Join(c.dataDir, "staging")
	}
	endpoint, err := c.endpoint()
	if err != nil {
		return nil, err
	}
	str, err := streamer.New(b, cat, v, streamer.Config{MasterKey: key, StagingDir: staging, ServerStagingDir: c.serverStagingDir,
		Workers: c.workers, Logger: lg("backup-streamer"), TracerProvider: tp, Endpoint: endpoint, Metrics: st.metrics})
	if err != nil {
		return nil, err
	}
	add("backup-streamer", str.Run)

	if b, err = newBus("scheduler"); err != nil {
		return nil, err
	}
	sch, err := scheduler.New(b, cat, scfg)
	if err != nil {
		return nil, err
	}
	st.scheduler = sch
	add("scheduler", sch.Run)

	if b, err = newBus("autoprotect"); err != nil {
		return nil, err
	}
	ap, err := autoprotect.New(b, cat, autoprotect.Config{Logger: lg("autoprotect"), TracerProvider: tp})
	if err != nil {
		return nil, err
	}
	add("autoprotect", ap.Run)

	if b, err = newBus("discovery"); err != nil {
		return nil, err
	}
	disc, err := discovery.New(b, cat, discovery.Config{MasterKey: key, Logger: lg("discovery"), TracerProvider: tp})
	if err != nil {
		return nil, err
	}
	st.disc = disc
	add("discovery", disc.Run)

	if b, err = newBus("gateway"); err != nil {
		return nil, err
	}
	gw, err := gateway.New(b, cat, gateway.Config{Addr: c.httpAddr, MasterKey: key, Token: c.token, Logger: lg("gateway"), TracerProvider: tp,
		Metrics: st.metrics.Handler()})
	if err != nil {
		return nil, err
	}
	st.gateway = gw
	st.cat = cat
	add("gateway", gw.Run)
	return st, nil
}

// endpoint is the streamer's S3 endpoint: off without --url-listen;
// otherwise its certificate is issued by coffer's CA, created in DATA/ca
// on first start (or the operator's, placed there).
func (c *upConfig) endpoint() (streamer.Endpoint, error) {
	if c.s3Addr == "" {
		return streamer.Endpoint{}, nil
	}
	e, ca, err := streamer.NewEndpoint(c.s3Addr, c.s3Advertise, filepath.Join(c.dataDir, "ca"))
	if err != nil {
		return e, err
	}
	c.ca, c.s3Advertise = ca, e.Advertise
	return e, nil
}

// startDemoInstance starts the simulator with the demo databases and
// registers it as sql1 with auto-protection on.
func startDemoInstance(ctx context.Context, c *upConfig, apiURL string, logger *slog.Logger, stdout io.Writer) (*mssqlsim.Instance, error) {
	dir := filepath.Join(c.dataDir, "sim")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	const password = "Coffer-Demo-1"
	cfg := mssqlsim.Config{ServerName: "SQL1", SAPassword: password, BackupDir: dir, Logger: logger.With("component", "mssqlsim")}
	if c.ca != nil {
		// as an operator installs coffer's CA where SQL Server trusts it
		cfg.TrustedCAs = c.ca.Pool()
	}
	inst, err := mssqlsim.Load(filepath.Join(dir, "state.gob"), cfg)
	if err != nil {
		return nil, err
	}
	if err := startDemo(inst); err != nil {
		inst.Close()
		return nil, err
	}
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		inst.Close()
		return nil, err
	}
	dsn := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", password), Host: addr, RawQuery: "encrypt=disable"}).String()
	api := newAPIClient(apiURL, c.token)
	if err := api.do(ctx, "POST", "/api/v1/instances", gateway.AddInstance{Name: "sql1", DSN: dsn}, nil); err != nil {
		inst.Close()
		return nil, fmt.Errorf("register the demo instance: %w", err)
	}
	if err := api.do(ctx, "PUT", "/api/v1/instances/sql1/autoprotect", gateway.Autoprotect{Enabled: true}, nil); err != nil {
		inst.Close()
		return nil, fmt.Errorf("turn on auto-protection of the demo instance: %w", err)
	}
	fmt.Fprintf(stdout, "coffer: demo SQL Server simulator on %s (sa / %s), registered as sql1 with auto-protection on\n", addr, password)
	return inst, nil
}
