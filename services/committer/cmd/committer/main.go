// Command committer runs coffer's committer service: it commits streamed
// backups as recovery points in the vault and the catalog, and keeps
// every job's state.
//
// Besides the settings every coffer service reads (COFFER_NATS_URL, the
// master key, OTEL_*), it reads the vault's location (daemon.VaultStoreFromEnv):
// COFFER_VAULT_DIR for a directory, or COFFER_S3_ENDPOINT, COFFER_S3_BUCKET,
// COFFER_S3_ACCESS_KEY, COFFER_S3_SECRET_KEY and optionally
// COFFER_S3_CA_FILE for an S3-compatible store. The committer initialises
// a vault that does not exist yet; run one replica first, so that only
// one process ever does.
package main

import (
	"context"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/committer"
)

func main() {
	daemon.Main(daemon.Spec{Name: committer.Name, NeedMasterKey: true, Run: run})
}

func run(ctx context.Context, d daemon.Deps) error {
	store, err := daemon.VaultStoreFromEnv(d.Getenv).Open()
	if err != nil {
		return err
	}
	v, err := daemon.OpenVault(ctx, store, d.MasterKey, true)
	if err != nil {
		return err
	}
	svc, err := committer.New(d.Bus, d.Catalog, v, committer.Config{Logger: d.Logger, TracerProvider: d.TracerProvider, Metrics: d.Metrics})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
