package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/metrics"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/telemetry"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/alerter"
	"github.com/cofferhq/coffer/services/autoprotect"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
	"github.com/cofferhq/coffer/services/committer"
	"github.com/cofferhq/coffer/services/discovery"
	"github.com/cofferhq/coffer/services/gateway"
	"github.com/cofferhq/coffer/services/scheduler"
)

// declarations are the services `coffer up` runs, in the order it builds
// them.
var declarations = []daemon.Service{
	committer.Declaration,
	streamer.Declaration,
	scheduler.Declaration,
	autoprotect.Declaration,
	discovery.Declaration,
	gateway.Declaration,
	alerter.Declaration,
}

// serviceNames are the names of the declarations, sorted.
func serviceNames() []string {
	names := make([]string, len(declarations))
	for i, d := range declarations {
		names[i] = d.Name
	}
	slices.Sort(names)
	return names
}

// upConfig is the configuration of `coffer up`: its own settings, the
// process's (daemon.Common) and every service's, registered from the
// services' declarations as the standalone binaries register them.
type upConfig struct {
	dataDir    string
	demo       bool
	natsListen string
	// services are the names of the services to run; every one when
	// --services is not given.
	services []string
	common   daemon.Common
	// all is every declared service with its settings.
	all []daemon.Configured
	// clock, when set, replaces the real clock of the scheduler and the
	// committer, whose ticks then come only from the caller (tests that
	// drive weeks of schedule).
	clock func() time.Time
	// getenv reads the NATS credentials and TLS settings
	// (daemon.NATSOptions) for an external NATS; nil reads nothing.
	getenv func(string) string
}

// parseUpFlags registers and parses the settings of `coffer up`, and
// validates those of the services it runs, reporting every problem at
// once.
func parseUpFlags(args []string, getenv func(string) string, stderr io.Writer) (*upConfig, error) {
	c := &upConfig{getenv: getenv}
	fs := flag.NewFlagSet("coffer up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := daemon.NewFlags(fs, getenv)
	f.String(&c.dataDir, "data", "COFFER_DATA", defaultDataDir(getenv), "directory for the embedded NATS, the local vault, staging, the CA and the master key")
	f.Bool(&c.demo, "demo", "COFFER_DEMO", false, "also run a simulated SQL Server with sample databases, registered as sql1 with auto-protection on")
	var services string
	f.String(&services, "services", "COFFER_SERVICES", "", "run only these services, comma-separated, from "+strings.Join(serviceNames(), ", ")+" (default every one)")
	f.String(&c.natsListen, "nats-listen", "COFFER_NATS_LISTEN", "", "also serve the embedded NATS on this address (e.g. 127.0.0.1:4222) for services in other processes")
	c.common.Register(f, true)
	c.all = daemon.Register(f, declarations...)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var err error
	if c.services, err = parseServices(services); err != nil {
		errs = append(errs, err)
	}
	if c.demo && c.runs(streamer.Name) && fs.Lookup("url-listen").Value.String() == "" {
		// the demo's simulated SQL Server 2022 backs up to the streamer
		fs.Set("url-listen", "127.0.0.1:0")
	}
	errs = append(errs, f.Err(), c.common.Validate())
	for _, s := range c.selected() {
		errs = append(errs, s.Settings.Validate())
	}
	if c.dataDir == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if c.common.NATSURL != "" && c.natsListen != "" {
		errs = append(errs, errors.New("--nats-listen serves the embedded NATS, which --nats replaces: give one"))
	}
	if c.common.NATSURL == "" && c.common.Replicas > 1 {
		errs = append(errs, fmt.Errorf("--replicas %d needs a NATS cluster (--nats): the embedded server keeps one copy", c.common.Replicas))
	}
	if c.demo && !c.runs(gateway.Name) {
		errs = append(errs, errors.New("--demo registers its SQL Server through the gateway: add gateway to --services"))
	}
	return c, errors.Join(errs...)
}

// parseServices reads --services: names of declared services, separated
// by commas; empty means every one.
func parseServices(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return serviceNames(), nil
	}
	valid := serviceNames()
	var names, unknown []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "" || slices.Contains(names, n):
		case !slices.Contains(valid, n):
			unknown = append(unknown, strconv.Quote(n))
		default:
			names = append(names, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--services: unknown service %s; the services are %s", strings.Join(unknown, ", "), strings.Join(valid, ", "))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--services names no service; the services are %s", strings.Join(valid, ", "))
	}
	return names, nil
}

// runs reports whether the service called name is among those to run.
func (c *upConfig) runs(name string) bool { return slices.Contains(c.services, name) }

// selected are the services to run, in declaration order.
func (c *upConfig) selected() []daemon.Configured {
	var out []daemon.Configured
	for _, s := range c.all {
		if c.runs(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// settings returns the settings of the service called name, when they
// are a C (nil otherwise): tests and the clock reach into them.
func settings[C any](c *upConfig, name string) *C {
	for _, s := range c.all {
		if v, ok := s.Settings.(*daemon.Config[C]); ok && s.Name == name {
			return &v.Value
		}
	}
	return nil
}

// defaultDataDir is COFFER_DATA, else ~/.coffer.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("COFFER_DATA"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".coffer")
}

// store is where the vault is: --vault-dir or --s3-*, else DATA/vault.
func (c *upConfig) store() daemon.VaultStore {
	s := c.common.Store
	if s.Dir == "" && s.S3Endpoint == "" {
		s.Dir = filepath.Join(c.dataDir, "vault")
	}
	return s
}

// masterKey finds the master key: COFFER_MASTER_KEY, the key file, or,
// unless mustExist, a new key written to DATA/master.key (a first start
// with no vault yet).
func (c *upConfig) masterKey(mustExist bool, stdout io.Writer) ([]byte, error) {
	if c.common.HasMasterKey() {
		k, err := c.common.MasterKey()
		if err != nil && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("master key file %s does not exist: the vault needs the key it was created with (COFFER_MASTER_KEY or --master-key-file)", c.common.MasterKeyFile)
		}
		return k, err
	}
	file := filepath.Join(c.dataDir, "master.key")
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
	if mustExist {
		return nil, fmt.Errorf("master key file %s does not exist: the vault needs the key it was created with (COFFER_MASTER_KEY or --master-key-file)", file)
	}
	k := vault.GenerateMasterKey()
	if err := os.WriteFile(file, []byte(fmt.Sprintf("%x\n", k)), 0o600); err != nil {
		return nil, fmt.Errorf("write new master key: %w", err)
	}
	fmt.Fprintf(stdout, "coffer: created a new master key in %s — keep a copy somewhere safe: without it no backup can be restored\n", file)
	return k, nil
}

func (a *app) upCmd() *cobra.Command {
	return a.passthrough(&cobra.Command{
		Use:   "up",
		Short: "Run every service in one process, with an embedded NATS and a local vault",
		Long: `Run coffer's services in one process, with an embedded NATS server and a
vault in the data directory, unless --nats and --vault-dir or --s3-* name
others; --services runs only some of them. Every setting can also be set
by the COFFER_* variable its flag names. It runs until interrupted.`,
		Example: `  coffer up --demo
  coffer up --data /var/lib/coffer --http 0.0.0.0:8080
  coffer up --services gateway,scheduler --nats nats://nats:4222`,
	}, func(ctx context.Context, args []string, flagOut io.Writer) error {
		return runUp(ctx, args, a.getenv, a.stdout, flagOut)
	})
}

// runUp runs the services in one process, with an embedded NATS server
// unless --nats names one.
func runUp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseUpFlags(args, getenv, stderr)
	if err != nil {
		return &usageError{err}
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return err
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

	if g := settings[gateway.Config](c, gateway.Name); g != nil && c.runs(gateway.Name) {
		secureGateway(g, c.dataDir, stdout)
	}
	r, err := startStack(ctx, c, stdout, logger, otel.GetTracerProvider())
	if err != nil {
		return err
	}
	defer r.stop()

	var sim *mssqlsim.Instance
	if c.demo {
		sim, err = startDemoInstance(ctx, c, r, logger, stdout)
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
	r.greet(c, stdout)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-r.errc:
		logger.Error("service failed", "err", runErr)
	}
	fmt.Fprintln(stdout, "coffer: stopping")
	return errors.Join(runErr, r.stop())
}

// greet tells the operator what runs and what to try.
func (r *running) greet(c *upConfig, stdout io.Writer) {
	if !slices.Equal(c.services, serviceNames()) {
		fmt.Fprintf(stdout, "coffer is up: %s, on NATS %s.\n", strings.Join(c.services, ", "), r.natsURL)
		if r.apiURL != "" {
			fmt.Fprintf(stdout, "  API and dashboard  %s\n", r.apiURL)
		}
		greetTLS(c, r, stdout)
		fmt.Fprintln(stdout, "Stop with Ctrl-C.")
		return
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
`, r.apiURL, c.dataDir, vaultWhere(c.store()))
	if r.ca != nil {
		fmt.Fprintf(stdout, "S3 endpoint: SQL Server 2022 and later back up to https://%s with no staging (older versions use %s).\n"+
			"  Make SQL Server trust %s: on Linux copy it to /var/opt/mssql/security/ca-certificates/coffer-ca.crt (only .crt files\n"+
			"  are read) and restart SQL Server; on Windows import it into the machine's Trusted Root Certification Authorities\n"+
			"  (docs/url-mode.md).\n",
			r.advertise, filepath.Join(c.dataDir, "staging"), r.caFile)
	}
	if !c.demo {
		fmt.Fprintf(stdout, "Register a SQL Server first: coffer instance add NAME --dsn 'sqlserver://user:password@host:1433'\n")
	}
	greetTLS(c, r, stdout)
}

// greetTLS says how to reach an API served over HTTPS.
func greetTLS(c *upConfig, r *running, stdout io.Writer) {
	g := settings[gateway.Config](c, gateway.Name)
	if g == nil || g.TLSCADir == "" || !strings.HasPrefix(r.apiURL, "https://") {
		return
	}
	fmt.Fprintf(stdout, "The API serves HTTPS with a certificate from coffer's CA: export COFFER_API=%s COFFER_API_CA=%s\n",
		r.apiURL, filepath.Join(g.TLSCADir, tlsca.CertFile))
}

// secureGateway readies a gateway that listens beyond loopback: HTTPS
// from coffer's CA (DATA/ca) unless it has a certificate, and, with no
// API token, a first admin whose token is printed once on its first
// start (docs/api.md).
func secureGateway(g *gateway.Config, dataDir string, stdout io.Writer) {
	if gateway.Loopback(g.Addr) {
		return
	}
	if g.TLSCertFile == "" && g.TLSKeyFile == "" && g.TLSCADir == "" {
		g.TLSCADir = filepath.Join(dataDir, "ca")
	}
	if g.Token == "" && g.FirstAdmin == "" {
		g.FirstAdmin = "admin"
	}
	g.FirstAdminOut = stdout
}

// running is a started stack.
type running struct {
	// apiURL is the gateway's, "" when it does not run here.
	apiURL string
	// natsURL is the external NATS, or "embedded".
	natsURL   string
	disc      *discovery.Service
	scheduler *scheduler.Service
	committer *committer.Service
	cat       *catalog.Catalog
	vault     *vault.Vault
	// ca issued the streamer's S3 endpoint certificate, in caFile; SQL
	// Server reaches the endpoint at advertise. nil without URL mode.
	ca                *tlsca.CA
	caFile, advertise string
	// nc is the services' NATS connection (tests listen on it).
	nc *nats.Conn
	// errc receives the error of a service that stopped on its own.
	errc <-chan error
	stop func() error
}

// startStack opens the vault and connects to NATS (embedded unless --nats
// names one) when the services to run need them, builds those services
// from their declarations, and returns once they run and the API
// listens.
func startStack(ctx context.Context, c *upConfig, stdout io.Writer, logger *slog.Logger, tp trace.TracerProvider) (*running, error) {
	sel := c.selected()
	// one registry for the whole process, on the API's /metrics
	p := daemon.Process{Logger: logger, TracerProvider: tp, Metrics: metrics.New(), DataDir: c.dataDir, Topology: c.common.Topology()}
	if addr := c.common.MetricsAddr; addr != "" && addr != "off" {
		if _, err := p.Metrics.Serve(ctx, addr, logger); err != nil {
			return nil, err
		}
	}
	use := daemon.VaultUseOf(sel)
	needKey := use != daemon.NoVault
	for _, s := range sel {
		needKey = needKey || s.NeedMasterKey
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return nil, err
	}
	var store blob.Store
	vaultExists := true
	if use != daemon.NoVault {
		var err error
		vs := c.store()
		vs.Logger = logger
		if store, err = vs.Open(); err != nil {
			return nil, err
		}
		_, statErr := os.Stat(filepath.Join(vs.Dir, "keys"))
		vaultExists = vs.Dir != "" && statErr == nil
	}
	if needKey {
		var err error
		// only a process that may create the vault creates its key
		if p.MasterKey, err = c.masterKey(vaultExists || use != daemon.CreatesVault, stdout); err != nil {
			return nil, err
		}
	}
	if c.clock != nil {
		if cc := settings[committer.Config](c, committer.Name); cc != nil {
			cc.Now, cc.GCTicks = c.clock, make(chan time.Time)
		}
		if sc := settings[scheduler.Config](c, scheduler.Name); sc != nil {
			sc.Now, sc.Ticks = c.clock, make(chan time.Time)
		}
	}
	r := &running{natsURL: c.common.NATSURL}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if store != nil {
		var err error
		if use == daemon.CreatesVault {
			p.Vault, err = daemon.OpenVault(ctx, store, p.MasterKey, true)
		} else {
			p.Vault, err = daemon.WaitVault(ctx, store, p.MasterKey, logger)
		}
		if err != nil {
			return nil, err
		}
		r.vault = p.Vault
	}
	if c.common.NATSURL != "" {
		// one service runs as its own NATS user; several need a user
		// allowed what each of them is (docs/security.md)
		user := "up"
		if len(sel) == 1 {
			user = sel[0].Name
		}
		getenv := c.getenv
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		nopts, err := daemon.NATSOptions(user, getenv, logger)
		if err != nil {
			return nil, err
		}
		nc, err := daemon.ConnectNATS(c.common.NATSURL, "coffer-up", nopts...)
		if err != nil {
			return nil, err
		}
		r.nc = nc
		closers = append(closers, nc.Close)
	} else {
		emb, nc, err := startEmbedded(c)
		if err != nil {
			return nil, err
		}
		r.nc, r.natsURL = nc, "embedded"
		closers = append(closers, emb.Shutdown, nc.Close)
	}
	built, cat, err := daemon.Build(ctx, r.nc, sel, p)
	if err == nil {
		err = r.take(built)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	r.cat = cat
	g := daemon.Go(built)
	p.Metrics.SetReady(true)
	r.errc = g.Failed()
	var once sync.Once
	r.stop = func() error {
		once.Do(func() {
			p.Metrics.SetReady(false)
			g.Stop()
			closeAll()
		})
		return nil
	}
	return r, nil
}

// startEmbedded starts the embedded NATS server in DATA/nats, serving
// --nats-listen when given, and connects to it in process.
func startEmbedded(c *upConfig) (*bus.Embedded, *nats.Conn, error) {
	opts := bus.Options{StoreDir: filepath.Join(c.dataDir, "nats")}
	if c.natsListen != "" {
		host, port, err := net.SplitHostPort(c.natsListen)
		if err != nil {
			return nil, nil, fmt.Errorf("--nats-listen %q: want host:port", c.natsListen)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, nil, fmt.Errorf("--nats-listen %q: want host:port", c.natsListen)
		}
	}
	emb, err := bus.StartEmbedded(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("start NATS: %w", err)
	}
	nc, err := emb.Connect("coffer-up")
	if err != nil {
		emb.Shutdown()
		return nil, nil, err
	}
	return emb, nc, nil
}

// take keeps what the caller and the tests use of the built services,
// and has the gateway listen, so that its address is known (and a port in
// use fails the start).
func (r *running) take(built []daemon.Built) error {
	for _, b := range built {
		switch s := b.Runner.(type) {
		case *gateway.Service:
			if err := s.Listen(); err != nil {
				return err
			}
			r.apiURL = s.URL()
		case *discovery.Service:
			r.disc = s
		case *scheduler.Service:
			r.scheduler = s
		case *committer.Service:
			r.committer = s
		case *streamer.Service:
			if e := s.Endpoint(); e.TLS != nil {
				ca, err := tlsca.Load(filepath.Dir(e.CAFile))
				if err != nil {
					return err
				}
				r.ca, r.caFile, r.advertise = ca, e.CAFile, e.Advertise
			}
		}
	}
	return nil
}

func vaultWhere(s daemon.VaultStore) string {
	if s.S3Endpoint != "" {
		return "s3://" + s.S3Endpoint + "/" + s.S3Bucket + "/" + s.S3Prefix
	}
	return s.Dir
}

// startDemoInstance starts the simulator with the demo databases and
// registers it as sql1 with auto-protection on.
func startDemoInstance(ctx context.Context, c *upConfig, r *running, logger *slog.Logger, stdout io.Writer) (*mssqlsim.Instance, error) {
	dir := filepath.Join(c.dataDir, "sim")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	const password = "Coffer-Demo-1"
	cfg := mssqlsim.Config{ServerName: "SQL1", SAPassword: password, BackupDir: dir, Logger: logger.With("component", "mssqlsim")}
	if r.ca != nil {
		// as an operator installs coffer's CA where SQL Server trusts it
		cfg.TrustedCAs = r.ca.Pool()
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
	api := newAPIClient(r.apiURL, settings[gateway.Config](c, gateway.Name).Token)
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
