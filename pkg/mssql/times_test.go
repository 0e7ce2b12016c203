package mssql_test

import (
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// TestTimesIgnoreDSNTimeZone: with go-mssqldb's `timezone` DSN option
// set to a zone other than the server's, the client still reads the
// server's wall clock (one shift, by the server's offset, not two),
// reads each backup's own offset from msdb, and STOPAT goes as a datetime
// that the server reads as its wall clock.
func TestTimesIgnoreDSNTimeZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 10, 25, 0, 20, 0, 0, time.UTC)} // 02:20 CEST
	inst := mssqlsim.New(mssqlsim.Config{SAPassword: "Pw-1", BackupDir: dir, DefaultPages: 64, Now: clk.Now, Location: paris})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Pw-1"), Host: addr, RawQuery: "encrypt=disable&timezone=Asia/Tokyo"}
	c, err := mssql.Open(u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()

	if got, err := c.UTCOffset(ctx); err != nil || got != 2*time.Hour {
		t.Errorf("UTCOffset at 02:20 CEST: got %v, %v; want 2h", got, err)
	}
	if err := inst.CreateDatabase("d", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "d.bak")
	if err := c.Backup(ctx, mssql.BackupRequest{Database: "d", Type: mssql.Full, Files: []string{full}}); err != nil {
		t.Fatal(err)
	}
	stop := time.Date(2026, 10, 25, 0, 40, 0, 0, time.UTC) // 02:40 CEST
	for _, at := range []time.Time{stop.Add(-10 * time.Minute), stop, stop.Add(10 * time.Minute)} {
		clk.Set(at.Add(-time.Second))
		if _, err := inst.Commit("d", 2); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(stop.Add(15 * time.Minute))
	log := filepath.Join(dir, "d.trn")
	if err := c.Backup(ctx, mssql.BackupRequest{Database: "d", Type: mssql.Log, Files: []string{log}}); err != nil {
		t.Fatal(err)
	}
	hs, err := c.HeaderOnly(ctx, []string{log})
	if err != nil || len(hs) != 1 {
		t.Fatalf("HEADERONLY: %v, %d sets", err, len(hs))
	}
	if got, want := hs[0].BackupStart, time.Date(2026, 10, 25, 2, 55, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("BackupStart %v; want the server's wall clock %v", got, want)
	}
	if got, err := c.BackupTimeZone(ctx, "d", hs[0].FirstLSN, hs[0].LastLSN); err != nil || got != 2*time.Hour {
		t.Errorf("BackupTimeZone: got %v, %v; want 2h", got, err)
	}

	if err := c.Restore(ctx, mssql.RestoreRequest{Database: "r", Files: []string{full}, Moves: []mssql.Move{
		{Logical: "d", Physical: filepath.Join(dir, "r.mdf")}, {Logical: "d_log", Physical: filepath.Join(dir, "r.ldf")}}}); err != nil {
		t.Fatal(err)
	}
	// STOPAT is the wall clock, 02:40 CEST
	if err := c.Restore(ctx, mssql.RestoreRequest{Database: "r", Log: true, Files: []string{log}, Recovery: true,
		StopAt: time.Date(2026, 10, 25, 2, 40, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	want, err := inst.ContentHash("d", stop)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := inst.ContentHash("r", time.Time{}); err != nil || got != want {
		t.Errorf("restored to 02:40 CEST: hash %s, %v; want %s", got, err, want)
	}
}
