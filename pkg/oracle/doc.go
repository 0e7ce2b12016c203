// Package oracle checks restored databases on any SQL Server, the
// simulator or a real one, with nothing but T-SQL every edition has.
//
// A Workload owns a table, coffer_oracle, in one database and inserts
// rows into it, one INSERT statement (one transaction) at a time. For
// every transaction it remembers, on the Go side, the rows it wrote, an
// interval of server time in which it committed, and the table's COUNT(*)
// and CHECKSUM_AGG(CHECKSUM(*)) right after it, as the server computed
// them. Check then compares a database restored as of a moment with that
// record: the restored table must hold exactly the rows of the
// transactions committed at or before the moment, nothing more, nothing
// less. The check never reads the source database, which may have moved
// on, been restored over or be on another server.
//
// Times are the server's own (SYSDATETIME()), as STOPAT reads them: local
// time on a real SQL Server, UTC on the simulator. Pass Check a moment in
// the same clock.
package oracle
