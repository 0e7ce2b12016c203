package mssqlsim

// Stats counts the work clients asked of the instance, so a test or a
// benchmark can tell what a poll costs the server.
type Stats struct {
	Batches  int64 // SQL batches and RPC calls run
	RowsSent int64 // result rows sent to clients
	// Serialized counts backups refused because another backup of the
	// database was running (3023).
	Serialized int64
	// Cancelled counts backups stopped because their request
	// was cancelled (a TDS attention, as go-mssqldb sends when a query's
	// context ends) or the connection closed: SQL Server's 3204.
	Cancelled int64
	// Stalled counts the backup streams a FaultStall holds now.
	Stalled int64
}

// Stats returns the counts since the instance started.
func (i *Instance) Stats() Stats {
	return Stats{Batches: i.batches.Load(), RowsSent: i.rowsSent.Load(), Serialized: i.serialized.Load(), Cancelled: i.cancelled.Load(),
		Stalled: i.stalled.Load()}
}
