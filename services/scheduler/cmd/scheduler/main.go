// Command scheduler runs coffer's scheduler service on its own, built from
// scheduler.Declaration as `coffer up` runs it. Its own settings:
//
//	--scheduler-tick-interval D     COFFER_SCHEDULER_TICK_INTERVAL     how often due backups are queued (default 15s)
//	--scheduler-max-per-instance N  COFFER_SCHEDULER_MAX_PER_INSTANCE  backups queued and running at once per instance (default 20)
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
	"github.com/cofferhq/coffer/services/scheduler"
)

func main() {
	daemon.Main(scheduler.Declaration)
}
