package main

import (
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/testproc"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestStoreOutage takes the vault's object store away for 60 seconds in
// the middle of a full backup: the backup waits for it, carries on where
// it was, and commits, SQL Server having run the BACKUP once, and the
// database restores exactly. Then, with --store-retry-for 5s, a backup
// during an outage fails visibly, records no recovery point, and the next
// one, with the store back, succeeds.
func TestStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60-second outage: make test's long run")
	}
	t.Parallel()
	t.Run("waits", func(t *testing.T) {
		t.Parallel()
		logs := &testproc.Buffer{}
		// 32 MiB at 1 MB/s: the BACKUP runs for about 33 s
		h := startHarness(t, harnessOptions{s3: true, pages: 4096, backupRate: 1e6,
			logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err := h.sim.CreateDatabase("Outage", mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
		h.sim.Commit("Outage", 200)
		h.register("Outage")
		h.mustCoffer("protect", "sql1/Outage")
		var job gateway.Job
		h.eventually("the first full under way", func() bool {
			for _, j := range h.jobs() {
				if j.Kind == "backup" && j.State == "running" && j.Percent >= 10 {
					job = j
					return true
				}
			}
			return false
		})
		h.s3.Kill()
		t.Logf("object store killed with job %s at %.0f%%", job.ID, job.Percent)
		time.Sleep(60 * time.Second) // the outage's length, not a condition
		h.s3.Restart(t)
		deadline := time.Now().Add(3 * time.Minute)
		for {
			j := cofferJSON[gateway.Job](h, "jobs", "show", job.ID)
			if j.State == "succeeded" {
				break
			}
			if j.State == "failed" || time.Now().After(deadline) {
				t.Fatalf("job %s: %s %s after the store came back", job.ID, j.State, j.Error)
			}
			time.Sleep(100 * time.Millisecond)
		}
		retries := strings.Count(logs.String(), "object store call failed; trying again")
		if retries == 0 {
			t.Fatal("no store call was tried again: the outage did not meet the backup")
		}
		if n := backupsRun(t, h, "Outage"); n != 1 {
			t.Fatalf("SQL Server ran %d full backups of Outage; want 1: the backup started again", n)
		}
		rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Outage")
		if len(rps) != 1 {
			t.Fatalf("%d recovery points; want 1", len(rps))
		}
		want, err := h.sim.ContentHash("Outage", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		h.mustCoffer("restore", "sql1/Outage", "--latest", "--as", "Outage copy", "--wait")
		if got, err := h.sim.ContentHash("Outage copy", time.Time{}); err != nil || got != want {
			t.Fatalf("restored %s (%v); want %s", got, err, want)
		}
		t.Logf("committed and restored exactly after a 60 s outage; %d store calls tried again", retries)
	})
	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		h := startHarness(t, harnessOptions{s3: true, args: []string{"--store-retry-for", "5s"}})
		h.protected("Brief")
		h.s3.Kill()
		start := time.Now()
		out, err := h.coffer("backup", "sql1/Brief", "--type", "full", "--wait")
		if err == nil {
			t.Fatalf("a backup with the store gone for good succeeded:\n%s", out)
		}
		t.Logf("failed after %v: %v", time.Since(start).Round(time.Second), err)
		if len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Brief")) != 1 {
			t.Fatal("the failed backup recorded a recovery point")
		}
		h.s3.Restart(t)
		h.mustCoffer("backup", "sql1/Brief", "--type", "full", "--wait")
		if n := len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Brief")); n != 2 {
			t.Fatalf("%d recovery points after the store came back; want 2", n)
		}
	})
}

// backupsRun counts the full backups of db in the server's msdb history.
func backupsRun(t *testing.T, h *harness, db string) int {
	t.Helper()
	conn, err := sql.Open("sqlserver", h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupset WHERE database_name = @p1 AND type = 'D'", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
