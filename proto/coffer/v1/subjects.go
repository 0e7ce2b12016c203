package cofferv1

// Streams, subjects and catalog buckets: the names every service shares.
// Subjects are constants here so that no service spells one as a literal.
const (
	// StreamEvents holds every event, kept for a week.
	StreamEvents = "COFFER_EVENTS"
	// StreamWork is the work queue of backup and restore jobs: each
	// message is delivered to one streamer worker.
	StreamWork = "COFFER_WORK"

	SubjectEvents = "coffer.evt.>"
	SubjectWork   = "coffer.work.>"

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
	SubjectBackupStreamed         = "coffer.evt.backup.streamed"
	SubjectRecoveryPointCommitted = "coffer.evt.rp.committed"
	SubjectRestoreCompleted       = "coffer.evt.restore.completed"
	SubjectJobProgress            = "coffer.evt.job.progress"
	SubjectJobFailed              = "coffer.evt.job.failed"
	SubjectJobQueued              = "coffer.evt.job.queued"
	SubjectPolicyPutRequested     = "coffer.evt.policy.put"
	SubjectPolicyDeleteRequested  = "coffer.evt.policy.delete"
	SubjectChainBroken            = "coffer.evt.chain.broken"
	SubjectRecoveryPointsExpired  = "coffer.evt.rp.expired"

	SubjectWorkBackup  = "coffer.work.backup"
	SubjectWorkRestore = "coffer.work.restore"

	BucketInstances      = "instances"
	BucketInventory      = "inventory"
	BucketProtected      = "protected"
	BucketAutoprotect    = "autoprotect"
	BucketRecoveryPoints = "recovery_points"
	BucketJobs           = "jobs"
	BucketPolicies       = "policies"
	BucketSchedule       = "schedule"
)
