// Command committer runs coffer's committer service on its own, built from
// committer.Declaration as `coffer up` runs it: it commits streamed
// backups as recovery points in the vault and the catalog, and keeps
// every job's state. It initialises a vault that does not exist yet; run
// one replica first, so that only one process ever does. Its own settings:
//
//	--gc-interval D  COFFER_GC_INTERVAL  how often the vault's unreferenced chunks are collected (default 1h)
//
// The vault is --vault-dir (COFFER_VAULT_DIR) for a directory, or
// --s3-endpoint, --s3-bucket, --s3-prefix, --s3-access-key, --s3-ca-file
// and --s3-insecure-http (COFFER_S3_ENDPOINT, COFFER_S3_BUCKET, ...) with
// COFFER_S3_SECRET_KEY for an S3-compatible store.
//
// Every flag can be set by the environment variable named with it; a flag
// given on the command line wins. Besides its own, it reads the settings
// every coffer process reads (daemon.Common):
//
//	--nats URL              COFFER_NATS_URL       the NATS server or cluster (default nats://127.0.0.1:4222)
//	--replicas N            COFFER_NATS_REPLICAS  copies of each stream and bucket: 1 on a single server, 3 on a cluster
//	--master-key-file FILE  COFFER_MASTER_KEY_FILE, or COFFER_MASTER_KEY holding the key itself,
//	                        or --master-key-command CMD (COFFER_MASTER_KEY_COMMAND) printing it
//
// and OTEL_* for traces. `-help` lists every flag with its default.
package main

import (
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/committer"
)

func main() {
	daemon.Main(committer.Declaration)
}
