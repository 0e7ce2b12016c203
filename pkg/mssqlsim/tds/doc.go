// Package tds implements the server side of Microsoft's Tabular Data Stream
// protocol, version 7.4 (MS-TDS), well enough for go-mssqldb and FreeTDS
// clients to talk to a simulated SQL Server.
//
// A Server accepts TCP connections and answers PRELOGIN and LOGIN7, asking
// a Handler to authenticate each login. Every SQL batch and RPC request of
// an authenticated connection goes to its Session as a Batch call whose
// ResultWriter becomes the token stream of the response.
//
// Implemented:
//   - PRELOGIN (encryption is always reported as not supported) and LOGIN7
//     with SQL Server authentication, TDS 7.2 to 7.4, and the packet size
//     the client asks for.
//   - Multi-packet requests and responses. A response streams when the
//     handler calls Flush or buffers more than 64 KiB; only whole tokens are
//     sent early, and a DONE that is the last token written so far is held
//     back until more follows or the request ends.
//   - SQL batches, and RPC requests: sp_executesql by ProcID or name, with
//     typed parameters decoded to Go values, and any other procedure as
//     "EXEC <name>" with its parameters. Decimal, numeric and money values
//     become exact decimal strings such as "-12.3400"; varchar becomes a
//     string; uniqueidentifier a [16]byte in wire (SQL Server) order; date
//     and time types a time.Time (datetimeoffset in a fixed zone, the others
//     in UTC).
//   - Attention: the running Batch's context is cancelled, its unsent output
//     dropped, and the response ends with DONE_ATTN.
//   - Transaction manager begin, commit and rollback, which only maintain a
//     transaction descriptor; the Session is not told.
//   - Result columns of the types listed for Type (an NVarChar wider than
//     4000 characters is sent as nvarchar(max)); ERROR and INFO tokens.
//
// Not implemented: TLS (clients must connect with encryption disabled or
// optional), MARS, SSPI, federated authentication, feature extensions, bulk
// load, batched RPCs (only the first RPC of a request runs), output
// parameters and return status, sql_variant, UDT and table-valued
// parameters, and the TDS 7.0/7.1 data formats.
package tds
