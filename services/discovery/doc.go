// Package discovery keeps coffer's picture of every registered SQL Server
// instance: whether coffer can reach it and back it up, and which databases
// it holds.
//
// It owns two catalog buckets. `instances` holds one [cofferv1.Instance] per
// registered instance under catalog.Key(instance): its sealed connection
// string, its health (with a reason and a fix a DBA can act on when it is
// unhealthy) and what SQL Server said of itself. `inventory` holds one
// [cofferv1.DatabaseInfo] per database under catalog.Key(instance,
// database), the name exactly as sys.databases spells it.
//
// What it guarantees:
//
//   - An instance is discovered when it is registered (InstanceAddRequested),
//     on request (DiscoverRequested), when Run starts, and every
//     Config.Interval after that (DiscoverAll).
//   - Each discovery compares what SQL Server lists with the inventory and
//     publishes DatabaseDiscovered for a new database, DatabaseChanged (with
//     the previous state) for a change of state, recovery model, read-only
//     flag, user access, standby, availability group, encryption, log chain
//     (last_log_backup_lsn, differential_base_lsn, recovery_fork_guid) or
//     file layout, and DatabaseDropped for a database that is gone. A
//     database dropped and created again under the same name (another
//     create_date or database_id) is a drop and then a discovery. Events are
//     published before the inventory is written, with deterministic ids, so
//     a discovery cut short and run again publishes the same events once.
//   - An instance that cannot be reached, whose login fails or whose login is
//     not sysadmin is recorded unhealthy with a reason and a fix, and its
//     inventory is kept as it was: no database is reported dropped because
//     coffer could not look. InstanceHealthChanged is published on
//     registration and whenever the health (or its reason) changes.
//   - The connection string is opened only in memory, for the length of one
//     discovery. It is never logged, and never part of a reason, an event
//     or an error: every text that came from the driver is scrubbed of the
//     password before it is kept.
//   - Transient failures (NATS, the catalog) are returned, so the message is
//     redelivered; an unhealthy instance is not a failure of discovery.
//
// One discovery runs at a time per instance in a process. The service is
// meant to run as one replica: several would each rediscover every instance
// on their timers, which is harmless (events are deduplicated and the
// instance record is written with compare-and-set) but wasted work.
package discovery
