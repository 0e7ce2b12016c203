// Package committer is coffer's committer service: it turns streamed
// backups into recovery points and keeps every job's state.
//
// It owns two catalog buckets. In recovery_points it records each
// committed backup under catalog.Key(instance, database, recovery point
// id); in jobs, each job under catalog.Key(job id), from the JobQueued,
// JobProgress, JobFailed, RestoreCompleted and BackupStreamed events.
//
// A BackupStreamed event names the draft of a manifest, which the
// streamer stored in the vault (events from streamers older than drafts
// list the chunks themselves). The committer reads the draft, checks that
// it records the event's stream, that every chunk it names is in the
// vault and that their sizes add up, then writes the manifest, whose Meta is the RecoveryPoint in protojson:
// that write is the commit, after which it deletes the draft. Only then does it record the recovery point,
// mark the job succeeded and publish RecoveryPointCommitted. Because the
// manifests carry the records, [Rebuild] can recreate recovery_points from
// the vault alone; a CatalogRebuildRequested event (coffer vault rebuild)
// runs it as a job. It merges: a record already in the catalog is kept.
// The committer also keeps a copy of the policies bucket in the vault
// (vault.PutCatalogCopy), from which the rebuild has the scheduler put
// back the policies the catalog lacks.
//
// On its own timer the committer collects garbage (CollectGarbage, with
// [vault.Vault.Collect]): chunks that no manifest and no draft names are
// condemned by one collection and deleted by a later one, once every
// backup that started before (each holds a vault session while it
// writes, until its draft is stored) has ended; so no backup in flight,
// in any streamer, loses a chunk it deduplicated against. Job records
// play no part in it. Committers run collections one at a time across
// processes: one that finds another running skips its turn. Drafts older
// than Config.DraftTTL, of backups nothing will commit, are deleted, and
// so are job records finished more than Config.JobRetention ago.
//
// Every handler is idempotent: JetStream delivers at least once, a
// redelivered BackupStreamed finds its manifest already written and
// carries on from there, and job updates are compare-and-set, moving a
// job's state only forward (queued, running, then succeeded or failed).
package committer
