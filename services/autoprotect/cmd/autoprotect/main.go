// Command autoprotect runs coffer's auto-protection service on its own,
// built from autoprotect.Declaration as `coffer up` runs it. Its own
// settings:
//
//	--autoprotect-initial-interval D  COFFER_AUTOPROTECT_INITIAL_INTERVAL  wait before the first retry of a failed protection (default 5s, doubling)
//	--autoprotect-attempts N          COFFER_AUTOPROTECT_ATTEMPTS          tries before a failed protection is reported (default 4)
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
	"github.com/cofferhq/coffer/services/autoprotect"
)

func main() {
	daemon.Main(autoprotect.Declaration)
}
