// Command gateway runs coffer's REST API and dashboard on its own, built
// from gateway.Declaration as `coffer up` runs it. It needs the master key
// to seal the connection strings of new instances. Its own settings:
//
//	--http ADDR     COFFER_HTTP_ADDR  address of the API and dashboard (default 127.0.0.1:8080; its container image sets 0.0.0.0:8080)
//	--token TOKEN   COFFER_API_TOKEN  require this API token
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
	"github.com/cofferhq/coffer/services/gateway"
)

func main() {
	daemon.Main(gateway.Declaration)
}
