package mssqlsim

import (
	"database/sql"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

const testPassword = "Sim-Pa55word!"

// startInstance starts an instance on loopback and returns it with a
// database/sql handle logged in as sa.
func startInstance(t *testing.T, cfg Config) (*Instance, *sql.DB) {
	t.Helper()
	inst, db, _ := startInstanceAt(t, cfg)
	return inst, db
}

// startInstanceAt is startInstance that also returns the address, for
// tests that open more connections.
func startInstanceAt(t *testing.T, cfg Config) (*Instance, *sql.DB, string) {
	t.Helper()
	if cfg.SAPassword == "" {
		cfg.SAPassword = testPassword
	}
	if cfg.BackupDir == "" {
		cfg.BackupDir = t.TempDir()
	}
	if cfg.DefaultPages == 0 {
		cfg.DefaultPages = 256
	}
	inst := New(cfg)
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	db := connect(t, addr, "sa", cfg.SAPassword)
	return inst, db, addr
}

func connect(t *testing.T, addr, user, password string) *sql.DB {
	t.Helper()
	u := &url.URL{Scheme: "sqlserver", User: url.UserPassword(user, password), Host: addr,
		RawQuery: "encrypt=disable&database=master&dial+timeout=5"}
	db, err := sql.Open("sqlserver", u.String())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// exec runs a statement and fails the test on error.
func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// errNumber returns the number of the first SQL Server error in err (the
// cause, before any 3013), or 0.
func errNumber(err error) int32 {
	var e mssql.Error
	if errors.As(err, &e) {
		if len(e.All) > 0 {
			return e.All[0].Number
		}
		return e.Number
	}
	return 0
}

// allNumbers returns every error number in err, in order.
func allNumbers(err error) []int32 {
	var e mssql.Error
	if !errors.As(err, &e) {
		return nil
	}
	var out []int32
	for _, x := range e.All {
		out = append(out, x.Number)
	}
	if len(out) == 0 {
		out = append(out, e.Number)
	}
	return out
}

// wantErr runs q and checks that it fails with SQL Server error number n.
func wantErr(t *testing.T, db *sql.DB, n int32, q string, args ...any) error {
	t.Helper()
	_, err := db.ExecContext(t.Context(), q, args...)
	if err == nil {
		t.Fatalf("%s: succeeded, want error %d", q, n)
	}
	if got := errNumber(err); got != n {
		t.Fatalf("%s: got error %d (%v), want %d", q, got, err, n)
	}
	return err
}

func queryHash(t *testing.T, db *sql.DB, name string, asOf time.Time) string {
	t.Helper()
	var h string
	var err error
	if asOf.IsZero() {
		err = db.QueryRowContext(t.Context(), "EXEC sim.content_hash @database = @p1", name).Scan(&h)
	} else {
		err = db.QueryRowContext(t.Context(), "EXEC sim.content_hash @database = @p1, @as_of = @p2", name, asOf.Format("2006-01-02T15:04:05.000")).Scan(&h)
	}
	if err != nil {
		t.Fatalf("content_hash %q: %v", name, err)
	}
	return h
}

func quoteName(s string) string {
	out := "["
	for _, r := range s {
		if r == ']' {
			out += "]]"
		} else {
			out += string(r)
		}
	}
	return out + "]"
}

func quoteString(s string) string {
	out := "N'"
	for _, r := range s {
		if r == '\'' {
			out += "''"
		} else {
			out += string(r)
		}
	}
	return out + "'"
}
