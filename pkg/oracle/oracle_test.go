package oracle_test

import (
	"database/sql"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/oracle"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func start(t *testing.T, clk *clock) *sql.DB {
	t.Helper()
	inst := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", DefaultPages: 64, BackupDir: t.TempDir(), Now: clk.Now})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	db, err := sql.Open("sqlserver", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestCheck restores a database as of moments between transactions and
// checks each with the oracle; a check against the wrong moment fails.
func TestCheck(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	db := start(t, clk)
	const name = "Sales ]'"
	exec(t, db, "CREATE DATABASE [Sales ]]']")
	w, err := oracle.New(t.Context(), db, name)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, "BACKUP DATABASE [Sales ]]'] TO DISK = 'f.bak'")
	for k := range 6 {
		clk.Add(time.Second)
		if _, err := w.Insert(t.Context(), k+1); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, db, "BACKUP LOG [Sales ]]'] TO DISK = 'l.trn'")
	txs := w.Txs()
	if len(txs) != 6 || txs[5].Count != 21 {
		t.Fatalf("transactions: got %+v, want 6 with 21 rows in all", txs)
	}
	tests := []struct {
		name  string
		asOf  time.Time
		check time.Time // the moment Check is told
		ok    bool
	}{
		{"before any row", txs[0].NotAfter.Add(-time.Millisecond), txs[0].NotAfter.Add(-time.Millisecond), true},
		{"at a commit", txs[2].NotAfter, txs[2].NotAfter, true},
		{"between commits", txs[3].NotAfter.Add(500 * time.Millisecond), txs[3].NotAfter.Add(500 * time.Millisecond), true},
		{"checked against a later moment", txs[1].NotAfter, txs[4].NotAfter, false},
		{"checked against an earlier moment", txs[4].NotAfter, txs[1].NotAfter, false},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := "r" + string(rune('a'+k))
			exec(t, db, "RESTORE DATABASE "+target+" FROM DISK = 'f.bak' WITH NORECOVERY, MOVE 'Sales ]''' TO @p1, MOVE 'Sales ]''_log' TO @p2",
				"/tmp/"+target+".mdf", "/tmp/"+target+".ldf")
			exec(t, db, "RESTORE LOG "+target+" FROM DISK = 'l.trn' WITH RECOVERY, STOPAT = @p1", mssqldb.VarChar(tt.asOf.Format("2006-01-02T15:04:05.000")))
			err := w.Check(t.Context(), db, target, tt.check)
			if tt.ok && err != nil {
				t.Errorf("check: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "transactions, want")) {
				t.Errorf("check: got %v, want an error naming the transactions", err)
			}
		})
	}
}
