package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/alert/alerttest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

// TestAlertOnFailedBackup: `coffer up --alert-webhook` alerts when a
// backup fails because SQL Server dropped the connection, once, and sends
// the resolution when the next backup of the database commits.
func TestAlertOnFailedBackup(t *testing.T) {
	hook := alerttest.NewHook(t, nil)
	h := startHarness(t, harnessOptions{pages: 2048, args: []string{"--alert-webhook", hook.URL}})
	const db = "Fragile"
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sim.Commit(db, 50)
	h.register(db)
	h.mustCoffer("protect", "sql1/"+db)
	h.eventually("the first full", func() bool {
		for _, j := range h.jobs() {
			if j.Kind == "backup" && j.State == "succeeded" {
				return true
			}
		}
		return false
	})
	posts := func() string { return fmt.Sprint(hook.Got()) }
	if got := hook.Got(); len(got) != 0 {
		t.Fatalf("alerts before any failure: %v", got)
	}

	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: db, AfterBytes: 4 << 20})
	if out, err := h.coffer("backup", "sql1/"+db, "--type", "full", "--wait"); err == nil {
		t.Fatalf("a backup through a dropped connection succeeded:\n%s", out)
	}
	remove()
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 1 }, posts)
	got := hook.Got()[0]
	if got["state"] != "open" || got["rule"] != "job_failed" || got["instance"] != "sql1" || got["database"] != db {
		t.Fatalf("alert %v; want job_failed open for sql1/%s", got, db)
	}
	if d, _ := got["detail"].(string); !strings.Contains(d, "backup-streamer") {
		t.Errorf("alert detail %q; want the failure's reason and service", d)
	}

	h.mustCoffer("backup", "sql1/"+db, "--type", "full", "--wait")
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 2 }, posts)
	if got := hook.Got(); len(got) != 2 || got[1]["state"] != "resolved" || got[1]["database"] != db {
		t.Fatalf("posts %v; want the alert, then its resolution", got)
	}
}
