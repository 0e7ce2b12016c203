// Command discovery runs coffer's discovery service on its own, built
// from discovery.Declaration as `coffer up` runs it. It needs the master
// key to open the instances' connection strings. Its own settings:
//
//	--discovery-interval D       COFFER_DISCOVERY_INTERVAL       how often every instance is polled (default 3s)
//	--discovery-full-interval D  COFFER_DISCOVERY_FULL_INTERVAL  the longest without a full listing (default 5m)
//	--discovery-timeout D        COFFER_DISCOVERY_TIMEOUT        bound on the conversation with one instance (default 30s)
//	--discovery-concurrency N    COFFER_DISCOVERY_CONCURRENCY    instances discovered at once (default 4)
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
	"github.com/cofferhq/coffer/services/discovery"
)

func main() {
	daemon.Main(discovery.Declaration)
}
