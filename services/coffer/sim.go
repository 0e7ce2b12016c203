package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

// simConfig is the configuration of `coffer sim`.
type simConfig struct {
	addr          string
	saPassword    string
	demo          bool
	dataDir       string
	serverName    string
	caseSensitive bool
	timezone      string
	location      *time.Location
	version       string
	majorVersion  int
	caFile        string
	backupDir     string
	saveEvery     time.Duration
	backupRate    float64 // MB/s
}

func (c *simConfig) validate() error {
	var errs []error
	if c.addr == "" {
		errs = append(errs, errors.New("--addr is required"))
	}
	if c.saPassword == "" {
		errs = append(errs, errors.New("--sa-password is required (or COFFER_SIM_SA_PASSWORD)"))
	}
	if c.backupRate < 0 {
		errs = append(errs, errors.New("--backup-rate must be 0 (unlimited) or positive"))
	}
	if c.saveEvery <= 0 {
		errs = append(errs, errors.New("--save-every must be positive"))
	}
	loc, err := time.LoadLocation(c.timezone)
	if err != nil {
		errs = append(errs, fmt.Errorf("--timezone: %w", err))
	}
	c.location = loc
	// the SQL Server versions the simulator can be, by their names
	switch c.version {
	case "2022":
		c.majorVersion = 16
	case "2019":
		c.majorVersion = 15
	default:
		errs = append(errs, fmt.Errorf("--version %q: want 2022 or 2019", c.version))
	}
	return errors.Join(errs...)
}

func parseSimFlags(args []string, getenv func(string) string, stderr io.Writer) (*simConfig, error) {
	c := &simConfig{}
	fs := flag.NewFlagSet("coffer sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1433", "TCP address to serve TDS on")
	// the password from the environment is not the flag's default, which
	// -help and a mistyped flag would print
	fs.StringVar(&c.saPassword, "sa-password", "", "password of the sa login (COFFER_SIM_SA_PASSWORD)")
	c.saPassword = getenv("COFFER_SIM_SA_PASSWORD")
	fs.BoolVar(&c.demo, "demo", false, "create sample databases with a running workload")
	fs.StringVar(&c.dataDir, "data", "", "directory that keeps the instance's state and backups across restarts (default: in memory)")
	fs.StringVar(&c.serverName, "server-name", "SIMSQL01", "the instance's server name")
	fs.BoolVar(&c.caseSensitive, "case-sensitive", false, "use a case-sensitive server collation")
	fs.StringVar(&c.timezone, "timezone", "UTC", "the server's time zone (IANA name, e.g. Europe/Paris): SYSDATETIME, msdb, HEADERONLY and STOPAT are in its local time")
	fs.StringVar(&c.version, "version", "2022", "the SQL Server to be: 2022, or 2019 (no S3 connector: BACKUP TO URL = 's3://...' is refused)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM file of CAs that BACKUP TO URL trusts (default: the system roots)")
	fs.StringVar(&c.backupDir, "backup-dir", "", "where relative TO DISK paths land (default: DATA/backups, or a temporary directory)")
	fs.DurationVar(&c.saveEvery, "save-every", 30*time.Second, "how often the state is saved with --data")
	fs.Float64Var(&c.backupRate, "backup-rate", 0, "cap each BACKUP stream at this many MB/s, as a real server's disks do (0: as fast as the machine allows)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

func (a *app) simCmd() *cobra.Command {
	return a.passthrough(&cobra.Command{
		Use:   "sim",
		Short: "Serve a simulated SQL Server 2022 instance",
		Long: `Serve a simulated SQL Server 2022 (or 2019) instance over real TDS, for
trying coffer and for tests (docs/mssqlsim.md). The sa password comes from
--sa-password or COFFER_SIM_SA_PASSWORD.`,
		Example: "  COFFER_SIM_SA_PASSWORD='Sim-Pa55!' coffer sim --addr 127.0.0.1:1433 --demo",
	}, func(ctx context.Context, args []string, flagOut io.Writer) error {
		return runSim(ctx, args, a.getenv, a.stdout, flagOut)
	})
}

func runSim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseSimFlags(args, getenv, stderr)
	if err != nil {
		return &usageError{err}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg := mssqlsim.Config{
		ServerName:    c.serverName,
		CaseSensitive: c.caseSensitive,
		Location:      c.location,
		MajorVersion:  c.majorVersion,
		SAPassword:    c.saPassword,
		BackupDir:     c.backupDir,
		BackupRate:    c.backupRate * 1e6,
		Logger:        logger,
	}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return fmt.Errorf("read --ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file %s holds no PEM certificate", c.caFile)
		}
		cfg.TrustedCAs = pool
	}
	statePath := ""
	if c.dataDir != "" {
		if cfg.BackupDir == "" {
			cfg.BackupDir = filepath.Join(c.dataDir, "backups")
		}
		statePath = filepath.Join(c.dataDir, "state.gob")
	} else if cfg.BackupDir == "" {
		dir, err := os.MkdirTemp("", "coffer-sim-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.BackupDir = dir
	}
	if err := os.MkdirAll(cfg.BackupDir, 0o750); err != nil {
		return fmt.Errorf("create backup directory: %w", err)
	}
	var inst *mssqlsim.Instance
	if statePath != "" {
		if inst, err = mssqlsim.Load(statePath, cfg); err != nil {
			return err
		}
	} else {
		inst = mssqlsim.New(cfg)
	}
	if c.demo {
		if err := startDemo(inst); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stdout, "coffer sim: SQL Server %s simulator %q listening on %s (backups in %s)\n",
		inst.ProductVersion(), c.serverName, l.Addr(), cfg.BackupDir)
	served := make(chan error, 1)
	go func() { served <- inst.Serve(l) }()

	var tick <-chan time.Time
	if statePath != "" {
		t := time.NewTicker(c.saveEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			cerr := inst.Close()
			<-served
			if statePath != "" {
				if err := inst.Save(statePath); err != nil {
					return err
				}
			}
			return cerr
		case err := <-served:
			inst.Close()
			return fmt.Errorf("serve: %w", err)
		case <-tick:
			if err := inst.Save(statePath); err != nil {
				logger.Error("save state", "err", err)
			}
		}
	}
}

// demoDatabases are what --demo creates: a few names a backup tool must
// handle, in each recovery model, with workloads.
var demoDatabases = []struct {
	name     string
	pages    int
	recovery mssqlsim.RecoveryModel
	tps      float64
}{
	{"Sales", 8192, mssqlsim.Full, 5},
	{"Inventory", 4096, mssqlsim.Full, 2},
	{"HR Payroll", 2048, mssqlsim.Simple, 1},
	{"Reporting]Archive", 2048, mssqlsim.BulkLogged, 0.5},
}

func startDemo(inst *mssqlsim.Instance) error {
	existing := map[string]bool{}
	for _, n := range inst.Databases() {
		existing[n] = true
	}
	for _, d := range demoDatabases {
		if !existing[d.name] {
			if err := inst.CreateDatabase(d.name, mssqlsim.DatabaseOptions{Pages: d.pages, Recovery: d.recovery}); err != nil {
				return fmt.Errorf("demo database %q: %w", d.name, err)
			}
		}
		if err := inst.StartWorkload(d.name, mssqlsim.WorkloadOptions{TPS: d.tps, MarkEvery: 600}); err != nil {
			return fmt.Errorf("demo workload %q: %w", d.name, err)
		}
	}
	return nil
}
