package mssqlsim

import (
	"encoding/binary"
	"hash/fnv"
	"strings"
	"time"
)

// Stats counts the work clients asked of the instance, so a test or a
// benchmark can tell what a poll costs the server.
type Stats struct {
	Batches  int64 // SQL batches and RPC calls run
	RowsSent int64 // result rows sent to clients
}

// Stats returns the counts since the instance started.
func (i *Instance) Stats() Stats {
	return Stats{Batches: i.batches.Load(), RowsSent: i.rowsSent.Load()}
}

// checksum is CHECKSUM(args...): an int hash of the values in which two
// strings equal under the server collation (case, under a
// case-insensitive one, and trailing spaces) hash alike, as in SQL
// Server. SQL Server's own algorithm is not documented; callers may only
// compare values, never expect particular ones.
func (i *Instance) checksum(args []any) int64 {
	h := fnv.New32a()
	var b [8]byte
	for _, v := range args {
		switch x := v.(type) {
		case nil:
			h.Write([]byte{0})
		case string:
			s := strings.TrimRight(x, " ")
			if !i.cfg.CaseSensitive {
				s = strings.ToLower(s)
			}
			h.Write([]byte{1})
			h.Write([]byte(s))
		case GUID:
			h.Write([]byte{2})
			h.Write([]byte(strings.ToLower(string(x))))
		case time.Time:
			binary.LittleEndian.PutUint64(b[:], uint64(x.UnixNano()))
			h.Write([]byte{3})
			h.Write(b[:])
		default:
			n, _ := toInt(x)
			binary.LittleEndian.PutUint64(b[:], uint64(n))
			h.Write([]byte{4})
			h.Write(b[:])
		}
	}
	return int64(int32(h.Sum32()))
}
