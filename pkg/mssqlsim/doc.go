// Package mssqlsim simulates a Microsoft SQL Server instance strictly enough
// to test a backup product against it.
//
// An Instance holds databases whose pages are derived from (seed, page id,
// page version), so a database of many GiB costs a few bytes a page in
// memory. Every committed transaction is a log record with an LSN in SQL
// Server's numeric form and a commit time, which gives BACKUP and RESTORE
// their real semantics: full, differential and log backups, copy-only
// backups, differential bases, log chains, recovery forks, point-in-time
// stops and marked transactions, each rule enforced with SQL Server's error
// number.
//
// The instance speaks TDS through package tds, so clients reach it with
// go-mssqldb or FreeTDS unchanged. It understands the statement shapes listed
// in docs/mssqlsim.md and answers anything else with a SQL Server error
// rather than a guess.
//
// The oracle, ContentHash (EXEC sim.content_hash), returns the hash of a
// database's pages now or as of a moment, so a test can prove that a
// database restored to time T equals its source as of T.
package mssqlsim
