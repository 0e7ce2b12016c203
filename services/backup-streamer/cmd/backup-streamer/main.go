// Command backup-streamer runs coffer's backup-streamer service: workers
// that take backup and restore jobs from the work queue and move the bytes
// between SQL Server and the vault.
//
// Besides the settings every coffer service reads (COFFER_NATS_URL, the
// master key, OTEL_*), it reads:
//
//	COFFER_STAGING_DIR         directory shared with SQL Server for backup files (default: $TMPDIR/coffer-staging)
//	COFFER_SERVER_STAGING_DIR  the same directory as SQL Server sees it, if its path differs
//	COFFER_STREAMER_WORKERS    jobs run at once (default 2)
//	COFFER_URL_LISTEN          serve the S3 endpoint SQL Server 2022 backs up to (URL mode) on this address
//	COFFER_URL_ADVERTISE       host:port SQL Server reaches that endpoint at (default the listening address)
//	COFFER_CA_DIR              the CA that issues the endpoint's certificate (ca.pem, ca.key; created if absent)
//	GOMEMLIMIT                 the Go runtime's soft memory limit (default: streamer.MemoryLimit, 224MiB for 2 workers)
//
// and the vault's location: COFFER_VAULT_DIR for a directory, or
// COFFER_S3_ENDPOINT, COFFER_S3_BUCKET, COFFER_S3_ACCESS_KEY,
// COFFER_S3_SECRET_KEY and optionally COFFER_S3_CA_FILE for an
// S3-compatible store. The committer initialises the vault; the streamer
// waits for it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/vault"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

func main() {
	daemon.Main(daemon.Spec{Name: streamer.Name, NeedMasterKey: true, Run: run})
}

func run(ctx context.Context, d daemon.Deps) error {
	cfg := streamer.Config{
		MasterKey:        d.MasterKey,
		StagingDir:       d.Getenv("COFFER_STAGING_DIR"),
		ServerStagingDir: d.Getenv("COFFER_SERVER_STAGING_DIR"),
		Logger:           d.Logger,
		TracerProvider:   d.TracerProvider,
		Metrics:          d.Metrics,
	}
	if cfg.StagingDir == "" {
		cfg.StagingDir = filepath.Join(os.TempDir(), "coffer-staging")
	}
	if w := d.Getenv("COFFER_STREAMER_WORKERS"); w != "" {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return fmt.Errorf("COFFER_STREAMER_WORKERS %q: want a positive number", w)
		}
		cfg.Workers = n
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(streamer.MemoryLimit(cfg.Workers))
	}
	if listen := d.Getenv("COFFER_URL_LISTEN"); listen != "" {
		caDir := d.Getenv("COFFER_CA_DIR")
		if caDir == "" {
			return errors.New("COFFER_URL_LISTEN needs COFFER_CA_DIR: the CA whose certificate SQL Server trusts")
		}
		e, _, err := streamer.NewEndpoint(listen, d.Getenv("COFFER_URL_ADVERTISE"), caDir)
		if err != nil {
			return err
		}
		cfg.Endpoint = e
	}
	store, err := daemon.VaultStoreFromEnv(d.Getenv).Open()
	if err != nil {
		return err
	}
	v, err := openVault(ctx, store, d.MasterKey, d.Logger)
	if err != nil {
		return err
	}
	svc, err := streamer.New(d.Bus, d.Catalog, v, cfg)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// openVault opens the vault, waiting for the committer to initialise a
// new one.
func openVault(ctx context.Context, store blob.Store, master []byte, log *slog.Logger) (*vault.Vault, error) {
	delay := time.Second
	for {
		v, err := vault.Open(ctx, store, master)
		if !errors.Is(err, vault.ErrNotInitialized) {
			if err != nil {
				return nil, fmt.Errorf("open vault: %w", err)
			}
			return v, nil
		}
		log.Info("waiting for the committer to initialise the vault", "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open vault: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}
