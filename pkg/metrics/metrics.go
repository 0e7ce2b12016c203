package metrics

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The metric names, as the dashboard and alerts spell them.
const (
	JobsTotal              = "coffer_jobs_total"
	TransferBytesTotal     = "coffer_transfer_bytes_total"
	TransferDuration       = "coffer_transfer_duration_seconds"
	ConsumerPending        = "coffer_consumer_pending_messages"
	ConsumerAckPending     = "coffer_consumer_ack_pending_messages"
	RPOLagSeconds          = "coffer_rpo_lag_seconds"
	VaultLogicalBytesTotal = "coffer_vault_logical_bytes_total"
	VaultStoredBytesTotal  = "coffer_vault_stored_bytes_total"
	VaultFreedBytesTotal   = "coffer_vault_freed_bytes_total"
	ScrapeErrorsTotal      = "coffer_metrics_scrape_errors_total"
)

// Names lists every metric this package defines. A histogram's series add
// _bucket, _sum and _count to its name.
func Names() []string {
	return []string{JobsTotal, TransferBytesTotal, TransferDuration, ConsumerPending, ConsumerAckPending,
		RPOLagSeconds, VaultLogicalBytesTotal, VaultStoredBytesTotal, VaultFreedBytesTotal, ScrapeErrorsTotal}
}

// Job states, the values of coffer_jobs_total's state label.
const (
	StateStarted   = "started"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Metrics is one process's metrics and their registry. Its methods are
// safe for concurrent use, and do nothing on a nil *Metrics.
type Metrics struct {
	reg           *prometheus.Registry
	jobs          *prometheus.CounterVec
	transferBytes *prometheus.CounterVec
	transferTime  *prometheus.HistogramVec
	logical       *prometheus.CounterVec
	stored        *prometheus.CounterVec
	freed         prometheus.Counter
	scrape        *scrapeCollector
	// ready is what /healthz reports (SetReady)
	ready atomic.Bool
}

// New returns Metrics in a registry of their own, with the Go runtime's
// and the process's standard metrics (go_*, process_*).
func New() *Metrics {
	kt := []string{"kind", "backup_type"}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: JobsTotal,
			Help: "Jobs by kind, backup type and state: started (streamer), succeeded or failed (committer)."},
			[]string{"kind", "backup_type", "state"}),
		transferBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: TransferBytesTotal,
			Help: "Bytes moved between SQL Server and the vault by finished backups and restores."}, kt),
		transferTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: TransferDuration,
			Help:    "How long each finished backup or restore took to move its bytes.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 17)}, kt), // 0.25 s to about 4.5 h
		logical: prometheus.NewCounterVec(prometheus.CounterOpts{Name: VaultLogicalBytesTotal,
			Help: "Size of the backups committed (before deduplication and compression)."}, []string{"backup_type"}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: VaultStoredBytesTotal,
			Help: "Bytes the committed backups added to the vault (new chunks, compressed and sealed)."}, []string{"backup_type"}),
		freed: prometheus.NewCounter(prometheus.CounterOpts{Name: VaultFreedBytesTotal,
			Help: "Stored bytes deleted from the vault by garbage collection."}),
		scrape: newScrapeCollector(),
	}
	m.reg.MustRegister(m.jobs, m.transferBytes, m.transferTime, m.logical, m.stored, m.freed, m.scrape,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer is the registry, for tests and for serving it another way.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// JobStarted counts a job a worker took.
func (m *Metrics) JobStarted(kind cofferv1.JobKind, typ cofferv1.BackupType) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(KindLabel(kind), TypeLabel(typ), StateStarted).Inc()
}

// JobFinished counts a job's outcome. Call it once per job, where the
// outcome is recorded.
func (m *Metrics) JobFinished(kind cofferv1.JobKind, typ cofferv1.BackupType, succeeded bool) {
	if m == nil {
		return
	}
	state := StateFailed
	if succeeded {
		state = StateSucceeded
	}
	m.jobs.WithLabelValues(KindLabel(kind), TypeLabel(typ), state).Inc()
}

// Transferred counts the bytes a finished backup or restore moved, and
// how long it took.
func (m *Metrics) Transferred(kind cofferv1.JobKind, typ cofferv1.BackupType, bytes int64, took time.Duration) {
	if m == nil {
		return
	}
	k, t := KindLabel(kind), TypeLabel(typ)
	m.transferBytes.WithLabelValues(k, t).Add(float64(max(bytes, 0)))
	m.transferTime.WithLabelValues(k, t).Observe(took.Seconds())
}

// Committed counts a committed backup: its logical size and the bytes it
// added to the vault. Call it once per recovery point.
func (m *Metrics) Committed(typ cofferv1.BackupType, logical, stored int64) {
	if m == nil {
		return
	}
	t := TypeLabel(typ)
	m.logical.WithLabelValues(t).Add(float64(max(logical, 0)))
	m.stored.WithLabelValues(t).Add(float64(max(stored, 0)))
}

// Freed counts stored bytes garbage collection deleted.
func (m *Metrics) Freed(bytes int64) {
	if m == nil {
		return
	}
	m.freed.Add(float64(max(bytes, 0)))
}

// KindLabel is a job kind as the kind label spells it: backup, restore,
// verify, protect, discover, delete, rebuild; unknown for none.
func KindLabel(k cofferv1.JobKind) string {
	if k == cofferv1.JobKind_JOB_KIND_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), "JOB_KIND_"))
}

// TypeLabel is a backup type as the backup_type label spells it: full,
// differential, log, copy_only_full; none for a job that is not a backup.
func TypeLabel(t cofferv1.BackupType) string {
	if t == cofferv1.BackupType_BACKUP_TYPE_UNSPECIFIED {
		return "none"
	}
	return strings.ToLower(strings.TrimPrefix(t.String(), "BACKUP_TYPE_"))
}
