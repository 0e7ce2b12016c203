package mssqlsim

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
)

// fileSize returns the total size of files in the environment's directory.
func (e *env) fileSize(names ...string) int64 {
	e.t.Helper()
	var n int64
	for _, name := range names {
		st, err := os.Stat(e.path(name))
		if err != nil {
			e.t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestStripedAndCompressed backs up to three stripes, with and without
// COMPRESSION, and restores from every stripe in any order.
func TestStripedAndCompressed(t *testing.T) {
	e := newEnv(t, Config{DefaultPages: 1024})
	e.exec("CREATE DATABASE [s]")
	for k := 0; k < 40; k++ {
		if _, err := e.inst.Commit("s", 20); err != nil {
			t.Fatal(err)
		}
	}
	want := e.hash("s")
	plain := []string{"p1.bak", "p2.bak", "p3.bak"}
	packed := []string{"c1.bak", "c2.bak", "c3.bak"}
	to := func(files []string) string {
		var parts []string
		for _, f := range files {
			parts = append(parts, "DISK = "+quoteString(f))
		}
		return strings.Join(parts, ", ")
	}
	e.exec("BACKUP DATABASE [s] TO " + to(plain) + " WITH NO_COMPRESSION, COPY_ONLY")
	e.exec("BACKUP DATABASE [s] TO " + to(packed) + " WITH COMPRESSION, COPY_ONLY, CHECKSUM")

	plainSize, packedSize := e.fileSize(plain...), e.fileSize(packed...)
	if plainSize < 1024*PageSize {
		t.Fatalf("uncompressed backup of 1024 pages: %d bytes", plainSize)
	}
	if packedSize >= plainSize*3/4 {
		t.Fatalf("compressed backup %d bytes, uncompressed %d: want clearly smaller", packedSize, plainSize)
	}
	for _, f := range plain {
		// the stripes share the body evenly
		if n := e.fileSize(f); n < plainSize/4 || n > plainSize/2 {
			t.Errorf("stripe %s: %d of %d bytes", f, n, plainSize)
		}
	}
	if h := headerOnly(t, e.db, e.path("c2.bak")); len(h) != 1 || !h[0].Compressed || h[0].BackupType != 1 {
		t.Errorf("HEADERONLY of a compressed stripe: %+v", h)
	}
	if h := headerOnly(t, e.db, e.path("p3.bak")); len(h) != 1 || h[0].Compressed {
		t.Errorf("HEADERONLY of an uncompressed stripe: %+v", h)
	}
	var families, seq int
	if err := e.db.QueryRowContext(t.Context(), "RESTORE LABELONLY FROM DISK = 'p2.bak'").Scan(new(sql.NullString), new(mssql.UniqueIdentifier), &families, &seq, new(sql.NullTime)); err != nil {
		t.Fatal(err)
	}
	if families != 3 || seq != 2 {
		t.Errorf("LABELONLY of the second stripe: FamilyCount %d FamilySequenceNumber %d, want 3 2", families, seq)
	}

	e.exec("RESTORE VERIFYONLY FROM " + to(packed) + " WITH CHECKSUM")
	e.exec("RESTORE DATABASE [p] FROM " + to([]string{"p3.bak", "p1.bak", "p2.bak"}) + " WITH " + e.moveTo("s", "p"))
	e.exec("RESTORE DATABASE [c] FROM " + to([]string{"c2.bak", "c3.bak", "c1.bak"}) + " WITH " + e.moveTo("s", "c"))
	for _, name := range []string{"p", "c"} {
		if got := e.hash(name); got != want {
			t.Errorf("%s: hash %s, want %s", name, got, want)
		}
	}
	wantAbnormal(t, e.db, 3132, "RESTORE DATABASE [x] FROM DISK = 'c1.bak', DISK = 'c2.bak' WITH "+e.moveTo("s", "x"))
	wantAbnormal(t, e.db, 3132, "RESTORE DATABASE [x] FROM DISK = 'p2.bak' WITH "+e.moveTo("s", "x"))
	// a stripe of another media set
	wantAbnormal(t, e.db, 3227, "RESTORE DATABASE [x] FROM DISK = 'p1.bak', DISK = 'c2.bak', DISK = 'p3.bak' WITH "+e.moveTo("s", "x"))
}

// runWithMessages runs a statement through go-mssqldb's message loop and
// returns the informational messages and the errors it sent.
func runWithMessages(t *testing.T, db *sql.DB, q string, args ...any) ([]mssql.Error, []error) {
	t.Helper()
	retmsg := &sqlexp.ReturnMessage{}
	rows, err := db.QueryContext(t.Context(), q, append(args, retmsg)...)
	if err != nil {
		return nil, []error{err}
	}
	defer rows.Close()
	var infos []mssql.Error
	var errs []error
	for active := true; active; {
		switch m := retmsg.Message(t.Context()).(type) {
		case sqlexp.MsgNotice:
			var info mssql.Error
			if e, ok := m.Message.(mssql.Error); ok {
				info = e
			} else {
				info.Message = m.Message.String()
			}
			infos = append(infos, info)
		case sqlexp.MsgError:
			errs = append(errs, m.Error)
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		}
	}
	return infos, errs
}

var percentRE = regexp.MustCompile(`^(\d+) percent processed\.$`)

// percents returns the numbers of the "N percent processed." messages.
func percents(t *testing.T, infos []mssql.Error) []int {
	t.Helper()
	var out []int
	for _, m := range infos {
		if p := percentRE.FindStringSubmatch(m.Message); p != nil {
			n, _ := strconv.Atoi(p[1])
			out = append(out, n)
			if m.Number != 3211 {
				t.Errorf("%q: number %d, want 3211", m.Message, m.Number)
			}
		}
	}
	return out
}

func steps(every int) []int {
	var out []int
	for p := every; every > 0 && p <= 100; p += every {
		out = append(out, p)
	}
	return out
}

// TestStatsMessages checks that STATS = n streams "N percent processed."
// messages every n percent, then the pages processed and the final
// "successfully processed" message, for BACKUP and RESTORE, also when there
// is nothing to copy.
func TestStatsMessages(t *testing.T) {
	e := newEnv(t, Config{DefaultPages: 512})
	e.exec("CREATE DATABASE [s]")
	e.work("s", 10)
	e.exec("BACKUP DATABASE [s] TO DISK = 'f.bak'")

	tests := []struct {
		stmt  string
		idle  bool // no transactions since the previous backup
		every int
		final string
	}{
		{"BACKUP DATABASE [s] TO DISK = 'stats.bak' WITH STATS = 10", false, 10, "BACKUP DATABASE successfully processed "},
		{"BACKUP DATABASE [s] TO DISK = 'stats25.bak' WITH STATS = 25, COMPRESSION", false, 25, "BACKUP DATABASE successfully processed "},
		{"BACKUP DATABASE [s] TO DISK = 'd.bak' WITH DIFFERENTIAL, STATS = 10", false, 10, "BACKUP DATABASE successfully processed "},
		{"BACKUP LOG [s] TO DISK = 'l.trn' WITH STATS = 20", false, 20, "BACKUP LOG successfully processed "},
		{"BACKUP LOG [s] TO DISK = 'empty.trn' WITH STATS = 20", true, 20, "BACKUP LOG successfully processed "},
		{"BACKUP DATABASE [s] TO DISK = 'nostats.bak'", false, 0, "BACKUP DATABASE successfully processed "},
		{"BACKUP DATABASE [s] TO DISK = 'empty.bak' WITH DIFFERENTIAL, STATS", true, 10, "BACKUP DATABASE successfully processed "},
		{"RESTORE DATABASE [r] FROM DISK = 'stats25.bak' WITH NORECOVERY, STATS = 50, " + e.moveTo("s", "r"), true, 50, "RESTORE DATABASE successfully processed "},
		{"RESTORE DATABASE [r] FROM DISK = 'd.bak' WITH NORECOVERY, STATS = 10", true, 10, "RESTORE DATABASE successfully processed "},
		{"RESTORE LOG [r] FROM DISK = 'l.trn' WITH NORECOVERY, STATS = 10", true, 10, "RESTORE LOG successfully processed "},
		{"RESTORE LOG [r] FROM DISK = 'empty.trn' WITH RECOVERY, STATS = 25", true, 25, "RESTORE LOG successfully processed "},
	}
	for _, tc := range tests {
		t.Run(tc.stmt, func(t *testing.T) {
			if !tc.idle {
				e.work("s", 10)
			}
			infos, errs := runWithMessages(t, e.db, tc.stmt)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if got, want := percents(t, infos), steps(tc.every); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("percent messages %v, want %v (all messages: %v)", got, want, infos)
			}
			processed, final, lastPercent := -1, -1, -1
			for k, m := range infos {
				if percentRE.MatchString(m.Message) {
					lastPercent = k
				}
				if strings.HasPrefix(m.Message, "Processed ") && strings.Contains(m.Message, "pages for database 's'") {
					processed = k
				}
				if strings.HasPrefix(m.Message, tc.final) {
					final = k
					if m.Number != 3014 {
						t.Errorf("%q: number %d, want 3014", m.Message, m.Number)
					}
				}
			}
			if final < 0 || final != len(infos)-1 {
				t.Errorf("messages %v: want %q last", infos, tc.final)
			}
			if strings.HasPrefix(tc.stmt, "BACKUP") && (processed < 0 || processed > final) {
				t.Errorf("messages %v: want 'Processed N pages' before the last", infos)
			}
			if lastPercent > processed && processed >= 0 || lastPercent > final {
				t.Errorf("messages %v: percent messages after the summary", infos)
			}
		})
	}
	var lastLog backupRow
	for _, b := range e.backups("s") {
		if b.Type == "L" {
			lastLog = b
		}
	}
	if got, want := e.hash("r"), e.hashAsOf("s", lastLog.Start); got != want {
		t.Errorf("restored with STATS: hash %s, want %s", got, want)
	}

	// a failure comes through the message loop as errors, cause first
	_, errs := runWithMessages(t, e.db, "BACKUP LOG [nope] TO DISK = 'x.trn' WITH STATS = 10")
	var nums []int32
	for _, err := range errs {
		var me mssql.Error
		if errors.As(err, &me) {
			nums = append(nums, me.Number)
		}
	}
	if fmt.Sprint(nums) != "[911 3013]" {
		t.Errorf("errors of a failed BACKUP in the message loop: %v (%v), want [911 3013]", nums, errs)
	}
}
