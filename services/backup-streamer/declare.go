package streamer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/vault"
)

// Declaration declares the backup-streamer once, for cmd/backup-streamer
// and `coffer up`. It opens the vault, waiting for the committer to create
// it.
var Declaration = daemon.Service{Name: Name, NeedMasterKey: true, Vault: daemon.OpensVault, Register: register}

// Settings are the streamer's settings as its flags set them.
type Settings struct {
	// Workers is Config.Workers.
	Workers int
	// StagingDir is Config.StagingDir; "" means DATA/staging under `coffer
	// up`, $TMPDIR/coffer-staging for the standalone binary.
	StagingDir string
	// ServerStagingDir is Config.ServerStagingDir.
	ServerStagingDir string
	// URLListen, when set, turns URL mode on: the S3 endpoint listens
	// there (NewEndpoint).
	URLListen string
	// URLAdvertise is the host:port SQL Server reaches the endpoint at;
	// "" means the listening address.
	URLAdvertise string
	// CADir holds the CA that issues the endpoint's certificate; "" means
	// DATA/ca under `coffer up`, and is refused with URLListen otherwise.
	CADir string
	// AckWait is Config.AckWait: how soon a job whose streamer died goes
	// to another.
	AckWait time.Duration
	// SessionRefresh is Config.SessionRefresh.
	SessionRefresh time.Duration
}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[Settings]{Check: check, New: build}
	c := &s.Value
	f.Int(&c.Workers, "workers", "COFFER_STREAMER_WORKERS", defaultWorkers, "backup and restore jobs run at once")
	f.String(&c.StagingDir, "staging-dir", "COFFER_STAGING_DIR", "",
		"directory shared with SQL Server for backup files (default DATA/staging under coffer up, $TMPDIR/coffer-staging otherwise)")
	f.String(&c.ServerStagingDir, "server-staging-dir", "COFFER_SERVER_STAGING_DIR", "",
		"the staging directory as SQL Server sees it, if its path differs")
	f.String(&c.URLListen, "url-listen", "COFFER_URL_LISTEN", "",
		"serve the S3 endpoint SQL Server 2022 backs up to and restores from (URL mode) on this address, e.g. :9443 (coffer up --demo: 127.0.0.1:0); without it every instance uses disk mode")
	f.String(&c.URLAdvertise, "url-advertise", "COFFER_URL_ADVERTISE", "",
		"host:port SQL Server reaches the S3 endpoint at (default the listening address)")
	f.String(&c.CADir, "ca-dir", "COFFER_CA_DIR", "",
		"the CA that issues the S3 endpoint's certificate: ca.pem and ca.key, created if absent (coffer up: default DATA/ca)")
	f.Duration(&c.AckWait, "ack-wait", "COFFER_STREAMER_ACK_WAIT", defaultAckWait,
		"how long a job may go without a sign of life from its streamer before another takes it over (the streamer signs every third of it)")
	f.Duration(&c.SessionRefresh, "session-refresh", "COFFER_VAULT_SESSION_REFRESH", vault.DefaultSessionRefresh,
		"how often a backup's vault session is renewed; garbage collection takes a writer that stopped renewing for dead after ten of these")
	return s
}

// check validates the settings the flags set, naming the flags.
func check(s Settings) error {
	var errs []error
	if s.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", s.Workers))
	}
	if s.URLListen == "" && s.URLAdvertise != "" {
		errs = append(errs, errors.New("--url-advertise without --url-listen: URL mode is off"))
	}
	return errors.Join(errs...)
}

func build(_ context.Context, d daemon.Deps, s Settings) (daemon.Runner, error) {
	cfg := Config{MasterKey: d.MasterKey, StagingDir: s.StagingDir, ServerStagingDir: s.ServerStagingDir,
		Workers: s.Workers, AckWait: s.AckWait, SessionRefresh: s.SessionRefresh,
		Logger: d.Logger, TracerProvider: d.TracerProvider, Metrics: d.Metrics}
	if cfg.StagingDir == "" {
		cfg.StagingDir = filepath.Join(os.TempDir(), "coffer-staging")
		if d.DataDir != "" {
			cfg.StagingDir = filepath.Join(d.DataDir, "staging")
		}
	}
	if err := os.MkdirAll(cfg.StagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	if s.URLListen != "" {
		caDir := s.CADir
		if caDir == "" && d.DataDir != "" {
			caDir = filepath.Join(d.DataDir, "ca")
		}
		if caDir == "" {
			return nil, errors.New("--url-listen needs --ca-dir (COFFER_CA_DIR): the CA whose certificate SQL Server trusts")
		}
		e, _, err := NewEndpoint(s.URLListen, s.URLAdvertise, caDir)
		if err != nil {
			return nil, err
		}
		cfg.Endpoint = e
	}
	// a job's memory is mostly byte buffers: a streamer alone in its
	// process keeps the heap near what is live, unless GOMEMLIMIT says
	// otherwise (SetMemoryLimit(-1) reads the limit without changing it)
	if d.Alone && debug.SetMemoryLimit(-1) == math.MaxInt64 {
		debug.SetMemoryLimit(MemoryLimit(cfg.Workers))
	}
	svc, err := New(d.Bus, d.Catalog, d.Vault, cfg)
	if err != nil {
		if cfg.Endpoint.Listener != nil {
			cfg.Endpoint.Listener.Close()
		}
		return nil, err
	}
	return svc, nil
}

// Endpoint is the S3 endpoint the streamer serves in URL mode: its
// advertised address and the CA certificate SQL Server must trust. Its
// TLS is nil without URL mode.
func (s *Service) Endpoint() Endpoint { return s.cfg.Endpoint }
