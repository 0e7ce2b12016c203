package tds

import (
	"context"
	"net"
	"time"
)

// Type is the SQL type of a result column, limited to the types the
// simulator returns.
type Type int

// Column types. Values written with Row must match the column type:
//
//	Int        int32 or int (nil for NULL)
//	BigInt     int64 (nil for NULL)
//	Bit        bool (nil for NULL)
//	NVarChar   string (nil for NULL); Size is the declared length in
//	           characters, 0 meaning nvarchar(max)
//	DateTime2  time.Time, datetime2(7) (nil for NULL)
//	DateTime   time.Time, datetime (nil for NULL)
//	Numeric    a decimal string of up to 25 digits, numeric(25,0), as
//	           SQL Server returns LSNs (nil for NULL); also accepts uint64
//	GUID       [16]byte in SQL Server's byte order, or a string
//	           "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (nil for NULL)
//	VarBinary  []byte (nil for NULL), varbinary(max)
//	SmallInt   int16 or int (nil for NULL)
//	TinyInt    uint8 or int (nil for NULL)
const (
	Int Type = iota + 1
	BigInt
	Bit
	NVarChar
	DateTime2
	DateTime
	Numeric
	GUID
	VarBinary
	SmallInt
	TinyInt
)

// Column describes one column of a result set.
type Column struct {
	Name     string
	Type     Type
	Size     int  // characters for NVarChar; 0 means max
	Nullable bool // whether the column may hold NULL
}

// Error is a SQL Server error or informational message. Severity (class)
// 10 or below is sent as an INFO token, above 10 as an ERROR token.
type Error struct {
	Number   int32
	State    uint8
	Severity uint8
	Message  string
	Server   string
	Proc     string
	Line     int32
}

func (e *Error) Error() string { return e.Message }

// Login is what the client sent in LOGIN7.
type Login struct {
	User     string
	Password string
	Database string // initial database, may be empty
	AppName  string
	HostName string
	// Kill drops the connection from the server's side, as KILL or
	// ALTER DATABASE ... WITH ROLLBACK IMMEDIATE drops a session. Set by
	// the server; safe to call from any goroutine, more than once.
	Kill func()
}

// Param is one parameter of an RPC request, decoded to a Go value:
// nil, int64, float64, bool, string, []byte, time.Time, or [16]byte for
// uniqueidentifier. Name includes the leading '@'.
type Param struct {
	Name  string
	Value any
	// Unicode says a string came as nchar or nvarchar (not char or
	// varchar): some statements take only the single-byte types.
	Unicode bool
}

// ResultWriter receives the results of one request, in order. The server
// turns the calls into TDS tokens. Methods return an error when the client
// connection is gone; a handler should then stop.
type ResultWriter interface {
	// Columns starts a result set (COLMETADATA).
	Columns(cols []Column) error
	// Row adds one row to the current result set; len(vals) must equal the
	// number of columns.
	Row(vals ...any) error
	// Done ends one statement. count is the row count to report, or -1 for
	// none (no DONE_COUNT flag).
	Done(count int64) error
	// Message sends an INFO (severity <= 10) or ERROR token. An error
	// message does not end the statement: call Done after it (the server
	// sets the DONE_ERROR flag on the Done that follows an ERROR).
	Message(e *Error) error
	// Flush sends what has been written so far to the client, so progress
	// messages reach it before the request ends.
	Flush() error
	// Abort drops the client connection at once without a reply, as a
	// server that dies mid-request would. Used to inject faults.
	Abort()
}

// Session is one authenticated connection.
type Session interface {
	// Batch runs a SQL batch. For an RPC call of sp_executesql, sql is the
	// statement text and params its parameters (without @stmt and @params);
	// for any other RPC, sql is "EXEC <procname>" and params its parameters.
	// ctx is cancelled when the client sends an Attention; the server then
	// answers with DONE+ATTN whatever the handler writes afterwards.
	Batch(ctx context.Context, sql string, params []Param, w ResultWriter)
	// Close is called once when the connection ends.
	Close()
}

// Resetter is a Session that can be reset, as sp_reset_connection resets
// one: the server calls Reset before a request whose packets carry the
// reset-connection status (a client pool reusing the connection).
type Resetter interface {
	Reset()
}

// Handler authenticates logins and creates sessions.
type Handler interface {
	// Login checks credentials. It returns a *Error (such as 18456) to
	// refuse the login.
	Login(ctx context.Context, l Login) (Session, error)
}

// Config configures a Server.
type Config struct {
	ServerName string // sent in LOGINACK and error tokens
	// Version is the product version sent in LOGINACK (major, minor, build).
	VersionMajor, VersionMinor uint8
	VersionBuild               uint16
	// PacketSize is the largest packet the server sends; the client may
	// ask for another in LOGIN7. Default 4096.
	PacketSize int
	// IdleTimeout closes connections idle that long; 0 means never.
	IdleTimeout time.Duration
}

// Listener is what Serve accepts connections from.
type Listener = net.Listener
