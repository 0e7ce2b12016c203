// Package mssql is the SQL Server client coffer's services use, against
// real SQL Server and the simulator alike: discovery queries, BACKUP and
// RESTORE. Every name and path travels as a parameter (sp_executesql)
// wherever T-SQL allows one; the few statements that take no variables
// (DROP DATABASE) quote names with QuoteName.
package mssql
