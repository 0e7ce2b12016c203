// Command backup-streamer runs coffer's backup-streamer service on its
// own, built from streamer.Declaration as `coffer up` runs it: workers
// that take backup and restore jobs from the work queue and move the bytes
// between SQL Server and the vault. Its own settings:
//
//	--workers N                 COFFER_STREAMER_WORKERS    jobs run at once (default 2)
//	--staging-dir DIR           COFFER_STAGING_DIR         directory shared with SQL Server for backup files (default $TMPDIR/coffer-staging)
//	--server-staging-dir DIR    COFFER_SERVER_STAGING_DIR  the same directory as SQL Server sees it, if its path differs
//	--url-listen ADDR           COFFER_URL_LISTEN          serve the S3 endpoint SQL Server 2022 backs up to (URL mode) on this address
//	--url-advertise HOST:PORT   COFFER_URL_ADVERTISE       host:port SQL Server reaches that endpoint at (default the listening address)
//	--ca-dir DIR                COFFER_CA_DIR              the CA that issues the endpoint's certificate (ca.pem, ca.key; created if absent)
//
// GOMEMLIMIT, when set, is the Go runtime's soft memory limit; otherwise
// the streamer sets streamer.MemoryLimit (224MiB for 2 workers). The
// committer initialises the vault; the streamer waits for it.
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
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

func main() {
	daemon.Main(streamer.Declaration)
}
