package telemetry

// Attribute keys shared by log records and span attributes in every service.
// They are untyped string constants so they serve both slog
// (slog.String(telemetry.JobIDKey, id)) and OpenTelemetry
// (attribute.String(telemetry.JobIDKey, id)).
const (
	// JobIDKey identifies one backup or restore job end to end.
	JobIDKey = "job_id"
	// InstanceKey names a SQL Server instance (server\instance or host:port).
	InstanceKey = "instance"
	// DatabaseKey names a database on an instance.
	DatabaseKey = "database"
	// SubjectKey is the NATS subject an event was published on.
	SubjectKey = "subject"
	// RecoveryPointKey identifies a committed (or committing) recovery point.
	RecoveryPointKey = "recovery_point"

	// TraceIDKey and SpanIDKey are added to log records by [NewLogHandler].
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)
