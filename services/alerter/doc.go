// Package alerter tells people when coffer needs them: it turns the
// events the other services publish into alerts (package alert) and sends
// each once, with a resolution when its condition clears, to webhooks and
// mail.
//
// It owns the catalog buckets `alerts` (one record per alert, which makes
// it sent once and resolved once across restarts and replicas) and
// `alert_settings` (which rules are on and where alerts go, written with
// every rule on and no channel when absent). It reads `protected`,
// `schedule` and `policies` (owned by the scheduler) for the RPO rule.
//
// Two durable consumers read the events, one at a time in stream order:
// "alerter-jobs" on COFFER_JOBS (JobFailed, ChainBroken,
// RecoveryPointCommitted, RestoreCompleted, VerifyCompleted) and
// "alerter" on COFFER_EVENTS (InstanceHealthChanged,
// ProtectionConfigured, VaultChecked). Every Config.Interval it evaluates the RPO rule
// over the protected databases and sends again what a stopped replica or
// a long outage of a channel left unsent. Any number of replicas can run:
// they share the consumers, and every change of an alert is a
// compare-and-set.
//
// Sending never holds up the events: a notification is recorded, then
// sent in the background, each channel retried with backoff.
package alerter
