// Package streamer is coffer's backup-streamer service: a pool of workers
// that take backup and restore work from the COFFER_WORK queue, run the
// T-SQL on the instance, and move the bytes between SQL Server and the
// vault. It owns no state: everything it learns it publishes.
//
// A backup runs in disk mode: BACKUP ... TO DISK into a staging directory
// the streamer shares with SQL Server, which the streamer reads while SQL
// Server writes it and feeds to the vault (chunked, deduplicated,
// compressed, encrypted). When the BACKUP statement has returned and the
// file is read to its end, the streamer reads the backup's header with
// RESTORE HEADERONLY and FILELISTONLY, removes the staging file, stores
// the backup's chunk list in the vault as a draft (vault.PutDraft: a list
// grows with the backup, past what a message carries) and publishes
// BackupStreamed, naming the draft, which the committer turns into a
// recovery point. Nothing the streamer does commits: until the committer
// writes the manifest, uploaded chunks belong to no recovery point, so a
// failed backup leaves none behind.
//
// A restore reassembles each recovery point's backup file from the vault
// into the staging directory, every chunk verified and the whole stream
// checked against the manifest's checksum, and only then runs RESTORE on
// the target instance, files relocated to its default paths under names
// derived from the target database.
//
// A failure SQL Server reports, a dropped connection or a storage failure
// is final for the job: JobFailed, and the work is acknowledged. Failures
// to read the catalog or to publish are transient: the work is
// redelivered. Shutdown cancels running statements (go-mssqldb sends an
// attention) and hands the work back for another worker.
package streamer
