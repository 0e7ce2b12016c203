// Package joblog carries what the services log about a job to the job's
// record, so that a person following the job reads its log lines beside
// its steps.
//
// A [Forwarder] wraps a service's slog handler: every record at info level
// or above that carries a job_id attribute (telemetry.JobIDKey, given to
// the logger With or to the record) is also kept as a JobLogLine, and the
// lines kept are published as JobLogged events, one per job, at most one
// batch per job each interval (or sooner when many lines wait), for the
// committer, which owns the jobs bucket. Logs never hold secrets, so
// neither do the lines.
package joblog
