package cofferv1

import "strings"

// Streams, subjects and catalog buckets: the names every service shares.
// Subjects are constants here so that no service spells one as a literal.
const (
	// StreamEvents holds every event, kept for a week.
	StreamEvents = "COFFER_EVENTS"
	// StreamWork is the work queue of backup and restore jobs: each
	// message is delivered to one streamer worker.
	StreamWork = "COFFER_WORK"
	// StreamJobs holds the many events of running jobs (progress, commits,
	// failures), apart from the rare ones, so that consumers of rare
	// subjects do not scan past them.
	StreamJobs = "COFFER_JOBS"

	SubjectEvents = "coffer.evt.>"
	SubjectWork   = "coffer.work.>"
	SubjectJobs   = "coffer.job.>"

	SubjectInstanceAddRequested   = "coffer.evt.instance.add"
	SubjectDiscoverRequested      = "coffer.evt.instance.discover"
	SubjectInstanceHealthChanged  = "coffer.evt.instance.health"
	SubjectDatabaseDiscovered     = "coffer.evt.database.discovered"
	SubjectDatabaseChanged        = "coffer.evt.database.changed"
	SubjectDatabaseDropped        = "coffer.evt.database.dropped"
	SubjectAutoprotectRequested   = "coffer.evt.autoprotect.set"
	SubjectProtectionRequested    = "coffer.evt.protection.requested"
	SubjectProtectionConfigured   = "coffer.evt.protection.configured"
	SubjectProtectionFailed       = "coffer.evt.protection.failed"
	SubjectUnprotectRequested     = "coffer.evt.protection.unprotect"
	SubjectBackupOnDemand         = "coffer.evt.backup.ondemand"
	SubjectBackupStreamed         = "coffer.job.streamed"
	SubjectRecoveryPointCommitted = "coffer.job.committed"
	SubjectRestoreCompleted       = "coffer.job.restored"
	SubjectJobProgress            = "coffer.job.progress"
	SubjectJobFailed              = "coffer.job.failed"
	SubjectJobQueued              = "coffer.job.queued"
	SubjectPolicyPutRequested     = "coffer.evt.policy.put"
	SubjectPolicyDeleteRequested  = "coffer.evt.policy.delete"
	SubjectChainBroken            = "coffer.job.chainbroken"
	SubjectRecoveryPointsExpired  = "coffer.job.expired"
	SubjectVerifyCompleted        = "coffer.job.verified"
	// SubjectRecoveryPointsDelete and SubjectRecoveryPointsUndelete carry
	// a person's soft delete and undelete to the committer.
	SubjectRecoveryPointsDelete   = "coffer.job.delete"
	SubjectRecoveryPointsUndelete = "coffer.job.undelete"
	SubjectCatalogRebuild         = "coffer.job.rebuild"
	// SubjectVaultChecked carries the result of a `coffer vault check`
	// run with NATS.
	SubjectVaultChecked = "coffer.evt.vault.checked"
	// SubjectVaultCreate carries VaultCreateRequested to the committer.
	SubjectVaultCreate = "coffer.job.vault.create"
	// SubjectJobCancel carries JobCancelRequested to the committer;
	// SubjectJobLogged carries JobLogged, from any service, to it.
	SubjectJobCancel = "coffer.job.cancel"
	SubjectJobLogged = "coffer.job.logged"

	SubjectWorkBackup  = "coffer.work.backup"
	SubjectWorkRestore = "coffer.work.restore"
	SubjectWorkVerify  = "coffer.work.verify"
	// SubjectWorkCopy carries CopyRequested; SubjectCopyStreamed its
	// outcome to the committer.
	SubjectWorkCopy     = "coffer.work.copy"
	SubjectCopyStreamed = "coffer.job.copied"

	// SubjectURLCheck carries URLCheckRequested to one backup-streamer,
	// which answers with URLCheckResult: a request over core NATS, outside
	// every stream (coffer.rpc. is not under any stream's subjects), so
	// that it is never stored and reaches no stream consumer.
	SubjectURLCheck = "coffer.rpc.streamer.url-check"

	BucketInstances       = "instances"
	BucketInventory       = "inventory"
	BucketProtected       = "protected"
	BucketAutoprotect     = "autoprotect"
	BucketRecoveryPoints  = "recovery_points"
	BucketJobs            = "jobs"
	BucketPolicies        = "policies"
	BucketSchedule        = "schedule"
	BucketSchedulerLeases = "scheduler_leases"
	BucketUsers           = "users"
	BucketAudit           = "audit"
	BucketAlerts          = "alerts"
	BucketAlertSettings   = "alert_settings"
	// BucketAlertRules holds what the alerter publishes of its rules and
	// channels, without secrets (AlertRules, key "rules"), for the gateway.
	BucketAlertRules = "alert_rules"
	// BucketVaults holds the named vaults (VaultRecord, key: the name).
	BucketVaults = "vaults"
)

// StreamFor returns the stream that holds subject, or "" for a subject no
// stream holds (a request over core NATS, such as SubjectURLCheck).
func StreamFor(subject string) string {
	switch {
	case strings.HasPrefix(subject, "coffer.job."):
		return StreamJobs
	case strings.HasPrefix(subject, "coffer.work."):
		return StreamWork
	case strings.HasPrefix(subject, "coffer.evt."):
		return StreamEvents
	}
	return ""
}
