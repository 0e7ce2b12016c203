// Package metrics defines the Prometheus metrics every coffer process
// exports, and serves them.
//
// A process makes one [Metrics] with [New] (or [Start], which also serves
// it), hands it to each service it runs, and serves [Metrics.Handler] on
// /metrics. Each Metrics has its own registry: nothing here touches the
// client library's global one. A nil *Metrics is valid and records
// nothing, so a service built without one (most tests) needs no checks.
//
// Events are counted where they happen: the streamer counts the jobs it
// starts and the bytes it moves, the committer the jobs' outcomes (where
// it records them, once per job) and what each commit adds to the vault.
// What is a state rather than an event is read when Prometheus scrapes:
// the backlog of the process's JetStream consumers ([Metrics.WatchConsumers])
// and the recovery point objective lag of each protected database
// ([Metrics.WatchRPO]).
//
// The metrics, by name (every name is also in [Names]):
//
//   - coffer_jobs_total{kind, backup_type, state}: jobs by kind (backup,
//     restore, verify, ...), backup type (full, differential, log,
//     copy_only_full; none for other kinds) and state: started (counted by
//     the streamer when it takes the job), succeeded or failed (counted by
//     the committer when it records the outcome).
//   - coffer_transfer_bytes_total{kind, backup_type}: bytes moved between
//     SQL Server and the vault by finished backups and restores (a
//     backup's logical size; the bytes a restore wrote).
//   - coffer_transfer_duration_seconds{kind, backup_type}: a histogram of
//     how long each of those transfers took. Throughput is
//     rate(coffer_transfer_bytes_total[5m]) over all transfers, or
//     rate(..._bytes_total) / rate(..._duration_seconds_sum) per transfer.
//   - coffer_consumer_pending_messages{stream, consumer} and
//     coffer_consumer_ack_pending_messages{stream, consumer}: work waiting
//     on each durable consumer the process consumes (JetStream's
//     num_pending: not yet delivered; num_ack_pending: delivered, not yet
//     settled). Replicas sharing a consumer report the same value: take
//     max by (stream, consumer).
//   - coffer_rpo_lag_seconds{instance, database}: for each protected
//     database, the seconds since the end of its last committed backup
//     (full, differential or log), or since its protection when it has
//     none yet. Exported by the scheduler.
//   - coffer_vault_logical_bytes_total{backup_type} and
//     coffer_vault_stored_bytes_total{backup_type}: per commit, the
//     backup's size and the bytes it added to the vault (new chunks,
//     compressed and sealed). Their ratio over a window is the
//     deduplication (and compression) ratio.
//   - coffer_vault_freed_bytes_total: stored bytes garbage collection
//     deleted. The vault's growth is stored minus freed.
//   - coffer_metrics_scrape_errors_total{source}: scrape-time reads
//     (consumer info, catalog) that failed; their metrics are missing from
//     that scrape.
package metrics
