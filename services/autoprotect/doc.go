// Package autoprotect protects the databases of instances whose
// auto-protection is on, as they are discovered, and retries a protection
// that fails.
//
// It owns the catalog bucket `autoprotect`: one [cofferv1.AutoprotectSetting]
// per instance under catalog.Key(instance). It reads `inventory` (owned by
// discovery) and `protected` (owned by the scheduler).
//
// What it guarantees:
//
//   - AutoprotectRequested stores the instance's setting. Turning it on asks
//     for protection of every eligible database the inventory holds that is
//     not protected yet; turning it off stops future requests and pending
//     retries, and protects nothing less.
//   - DatabaseDiscovered of an eligible, unprotected database on an instance
//     whose auto-protection is on publishes ProtectionRequested with the
//     instance's policy, requested_by "autoprotect", attempt 1.
//   - ProtectionFailed of a request of autoprotect's, attempt n below
//     Config.Attempts, waits the n-th interval of an exponential backoff
//     (Config.InitialInterval doubling: 5s, 10s, 20s) counted from the
//     failure, then asks again with attempt n+1, unless auto-protection was
//     turned off or the database got protected meanwhile. When the last
//     attempt fails it publishes a JobFailed (kind PROTECT) that says how
//     many attempts failed and why the last one did, so the failure is seen
//     rather than left silent.
//   - Every event has a deterministic id (the first request's from the
//     database's identity, a retry's from the failure it answers), so a
//     redelivered message publishes nothing new.
//
// Eligible means any user database: online or not, in any recovery model.
// The system databases master, model and msdb are never protected
// automatically — a DBA protects them explicitly, with a policy that suits
// them (master takes no differential) — and neither are database
// snapshots, which cannot be backed up (tempdb is never listed).
//
// Settings and discoveries are handled one at a time in stream order (the
// durable consumer "autoprotect"), so a discovery published after the
// setting was turned on always sees it. Failures are handled by a second
// durable consumer, "autoprotect-retry", several at once, so the backoff
// of one database's retry never holds up another database's protection.
package autoprotect
