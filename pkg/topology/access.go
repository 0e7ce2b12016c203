package topology

import (
	"slices"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Consumer names a durable consumer: the stream it reads and its name.
type Consumer struct {
	Stream  string
	Durable string
}

// Access is what one service does on NATS, and so all it may do: the
// events it publishes, the durable consumers it reads, the buckets it
// writes (owns) and reads, and the core NATS requests it sends and
// answers. pkg/natsauth turns each entry into the permissions of the
// service's own NATS user, so a subject or bucket added to a service must
// be added here too; the test in pkg/natsauth runs every service's
// topology setup and consumers over its restricted user, and the one in
// services/coffer every real service.
type Access struct {
	// Service is the service's name, also its NATS user's.
	Service string
	// Publishes are the subjects it stores events on (JetStream
	// publishes). A service with consumers publishes JobFailed for its
	// poison messages (daemon.NewBus); every service publishes JobLogged,
	// its log lines about jobs (daemon.Build).
	Publishes []string
	// Consumes are the durable consumers it creates and pulls from.
	Consumes []Consumer
	// Writes are the buckets it owns: it alone puts, updates and deletes
	// their keys. An owner reads its buckets too.
	Writes []string
	// Reads are the other services' buckets it reads (get, list, watch).
	Reads []string
	// Requests are the core NATS subjects it sends requests on.
	Requests []string
	// Serves are the core NATS subjects it answers requests on.
	Serves []string
}

// ReadsBucket reports whether a reads bucket (as its owner or reader).
func (a Access) ReadsBucket(bucket string) bool {
	return slices.Contains(a.Writes, bucket) || slices.Contains(a.Reads, bucket)
}

// Services is every service's access, one entry each, and that of `coffer
// vault check` (VaultCheck): the one table of who may publish, consume,
// write and read what.
var Services = []Access{
	{
		Service: "discovery",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectDatabaseDiscovered,
			cofferv1.SubjectDatabaseChanged,
			cofferv1.SubjectDatabaseDropped,
			cofferv1.SubjectInstanceHealthChanged,
			cofferv1.SubjectJobFailed,
		},
		Consumes: []Consumer{{cofferv1.StreamEvents, "discovery"}},
		Writes:   []string{cofferv1.BucketInstances, cofferv1.BucketInventory},
	},
	{
		Service: "autoprotect",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectProtectionRequested,
			cofferv1.SubjectJobFailed,
		},
		Consumes: []Consumer{{cofferv1.StreamEvents, "autoprotect"}, {cofferv1.StreamEvents, "autoprotect-retry"}},
		Writes:   []string{cofferv1.BucketAutoprotect},
		Reads:    []string{cofferv1.BucketInventory, cofferv1.BucketProtected},
	},
	{
		Service: "scheduler",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectProtectionConfigured,
			cofferv1.SubjectProtectionFailed,
			cofferv1.SubjectJobQueued,
			cofferv1.SubjectJobFailed,
			cofferv1.SubjectChainBroken,
			cofferv1.SubjectRecoveryPointsExpired,
			cofferv1.SubjectWorkBackup,
			cofferv1.SubjectWorkVerify,
		},
		Consumes: []Consumer{{cofferv1.StreamEvents, "scheduler"}, {cofferv1.StreamJobs, "scheduler-jobs"}},
		Writes:   []string{cofferv1.BucketProtected, cofferv1.BucketPolicies, cofferv1.BucketSchedule, cofferv1.BucketSchedulerLeases},
		Reads:    []string{cofferv1.BucketInventory, cofferv1.BucketRecoveryPoints, cofferv1.BucketJobs},
	},
	{
		Service: "backup-streamer",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectBackupStreamed,
			cofferv1.SubjectRestoreCompleted,
			cofferv1.SubjectVerifyCompleted,
			cofferv1.SubjectChainBroken,
			cofferv1.SubjectJobProgress,
			cofferv1.SubjectJobFailed,
			cofferv1.SubjectDiscoverRequested, // after a restore, so the new database is listed at once
			cofferv1.SubjectCopyStreamed,
		},
		Consumes: []Consumer{{cofferv1.StreamWork, "streamer"}},
		Reads:    []string{cofferv1.BucketInstances, cofferv1.BucketRecoveryPoints, cofferv1.BucketJobs, cofferv1.BucketVaults},
		Serves:   []string{cofferv1.SubjectURLCheck},
	},
	{
		Service: "committer",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectRecoveryPointCommitted,
			cofferv1.SubjectJobFailed,
			cofferv1.SubjectChainBroken,        // a deletion took the chain's tail
			cofferv1.SubjectPolicyPutRequested, // a rebuild puts back the vault's copy of the policies
			cofferv1.SubjectJobQueued,          // a policy's copy of a recovery point
			cofferv1.SubjectWorkCopy,
		},
		Consumes: []Consumer{{cofferv1.StreamJobs, "committer"}},
		Writes:   []string{cofferv1.BucketRecoveryPoints, cofferv1.BucketJobs, cofferv1.BucketVaults},
		Reads:    []string{cofferv1.BucketProtected, cofferv1.BucketPolicies},
	},
	{
		Service: "gateway",
		Publishes: []string{
			cofferv1.SubjectJobLogged,
			cofferv1.SubjectInstanceAddRequested,
			cofferv1.SubjectDiscoverRequested,
			cofferv1.SubjectAutoprotectRequested,
			cofferv1.SubjectProtectionRequested,
			cofferv1.SubjectUnprotectRequested,
			cofferv1.SubjectBackupOnDemand,
			cofferv1.SubjectPolicyPutRequested,
			cofferv1.SubjectPolicyDeleteRequested,
			cofferv1.SubjectJobQueued,
			cofferv1.SubjectWorkRestore,
			cofferv1.SubjectWorkVerify,
			cofferv1.SubjectRecoveryPointsDelete,
			cofferv1.SubjectRecoveryPointsUndelete,
			cofferv1.SubjectCatalogRebuild,
			cofferv1.SubjectVaultCreate,
			cofferv1.SubjectJobCancel,
		},
		Writes: []string{cofferv1.BucketUsers, cofferv1.BucketAudit},
		Reads: []string{
			cofferv1.BucketInstances, cofferv1.BucketInventory, cofferv1.BucketProtected,
			cofferv1.BucketAutoprotect, cofferv1.BucketRecoveryPoints, cofferv1.BucketJobs,
			cofferv1.BucketPolicies, cofferv1.BucketVaults,
			// never alert_settings: its webhook URLs hold tokens
			cofferv1.BucketAlerts, cofferv1.BucketAlertRules,
		},
		Requests: []string{cofferv1.SubjectURLCheck},
	},
	{
		Service:   "alerter",
		Publishes: []string{cofferv1.SubjectJobFailed, cofferv1.SubjectJobLogged},
		Consumes:  []Consumer{{cofferv1.StreamEvents, "alerter"}, {cofferv1.StreamJobs, "alerter-jobs"}},
		Writes:    []string{cofferv1.BucketAlerts, cofferv1.BucketAlertSettings, cofferv1.BucketAlertRules},
		Reads:     []string{cofferv1.BucketProtected, cofferv1.BucketSchedule, cofferv1.BucketPolicies},
	},
	{
		// not a service: the user `coffer vault check --nats` publishes
		// its result as, for the alerter
		Service:   VaultCheck,
		Publishes: []string{cofferv1.SubjectVaultChecked},
	},
}

// VaultCheck is the NATS user of `coffer vault check`, which publishes
// VaultChecked and does nothing else on NATS.
const VaultCheck = "vault-check"

// AccessOf returns the access of service, and whether there is one.
func AccessOf(service string) (Access, bool) {
	for _, a := range Services {
		if a.Service == service {
			return a, true
		}
	}
	return Access{}, false
}
