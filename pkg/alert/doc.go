// Package alert turns coffer's events into alerts a person receives: which
// conditions open an alert and which clear it (the rules), the record of
// each alert that makes it sent once and resolved once (the store), and
// the channels that carry it (webhooks with generic JSON, Slack and Teams
// bodies, and mail over SMTP with TLS).
//
// The rules, each on unless AlertSettings turn it off:
//
//   - job_failed: a JobFailed (auto-protection's final failure included)
//     opens an alert per database and job kind; the next success of that
//     kind for the database resolves it (a committed recovery point for a
//     backup, a configured protection, a restore that completed onto the
//     target, a test restore that passed, a healthy instance for a
//     discovery).
//   - chain_break: a ChainBroken opens an alert per database; the next
//     committed full (not copy-only) resolves it.
//   - rpo: a protected database with no committed backup within twice its
//     policy's interval (the log interval while log backups run, else the
//     longest gap between its full and differential slots) opens an alert;
//     the next backup resolves it. The alerter evaluates it on a timer.
//   - verify_failed: a test restore with a failed result opens an alert
//     per database; one whose every result passed resolves it.
//   - instance_unhealthy: an instance reported unreachable opens an alert;
//     its report of being healthy again resolves it.
//   - vault_check_failed: a `coffer vault check` that found damage or
//     could not finish (a VaultChecked, which it publishes when given
//     NATS) opens an alert per vault; the next one that passed resolves it.
//
// An alert is an [AlertState] record in the `alerts` bucket, keyed by rule
// and subject, changed only by compare-and-set: of two replicas handling
// the same condition (or one event delivered twice), one opens the alert
// and one sends it. A notification is recorded as pending in the record
// before it is sent, and each channel that took it is recorded, so a
// notification a crash interrupted is sent by the next sweep, and not
// again to a channel that has it.
//
// [AlertState]: github.com/cofferhq/coffer/proto/coffer/v1.AlertState
package alert
