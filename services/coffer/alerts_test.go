package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/alert/alerttest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
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
	// the CLI lists it open, and the rule that sent it
	if open := cofferJSON[[]gateway.Alert](h, "alerts", "--open"); len(open) != 1 || open[0].Rule != "job_failed" || open[0].Database != db {
		t.Errorf("coffer alerts --open = %+v; want the job_failed alert of %s", open, db)
	}
	if table := h.mustCoffer("alerts"); !strings.Contains(table, "OPEN") || !strings.Contains(table, "sql1/"+db) {
		t.Errorf("coffer alerts:\n%s\nwant the open alert of sql1/%s", table, db)
	}
	h.eventually("the alerter's rules published", func() bool {
		rules := cofferJSON[gateway.AlertRules](h, "alerts", "rules")
		return rules.Published && len(rules.Channels) == 1 && rules.Channels[0].Kind == "json"
	})
	if table := h.mustCoffer("alerts", "rules"); !strings.Contains(table, "job_failed") || strings.Contains(table, hook.URL) {
		t.Errorf("coffer alerts rules:\n%s\nwant the job_failed rule, and never the webhook's URL", table)
	}

	h.mustCoffer("backup", "sql1/"+db, "--type", "full", "--wait")
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 2 }, posts)
	if got := hook.Got(); len(got) != 2 || got[1]["state"] != "resolved" || got[1]["database"] != db {
		t.Fatalf("posts %v; want the alert, then its resolution", got)
	}
}

// TestAlertOnFailedVaultCheck: `coffer vault check --nats` publishes its
// result to a running coffer up, whose alerter opens the vault's alert
// when a full check finds a corrupted chunk, naming the vault and the
// recovery point, and resolves it when the next check, after the pack is
// put back, passes. Without NATS the check says its result goes nowhere;
// with NATS unreachable it fails, saying so.
func TestAlertOnFailedVaultCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers NATS on
	if err != nil {
		t.Fatal(err)
	}
	natsAddr, deadAddr := l.Addr().String(), dead.Addr().String()
	l.Close()
	dead.Close()
	hook := alerttest.NewHook(t, nil)
	h := startHarness(t, harnessOptions{args: []string{"--alert-webhook", hook.URL, "--nats-listen", natsAddr}})
	const db = "Checked"
	h.protected(db)
	rp := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)[0]
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(h.key), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"vault", "check", "--full", "--data", h.data, "--master-key-file", keyFile}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	withNATS := []string{"--nats", "nats://" + natsAddr}
	posts := func() string { return fmt.Sprint(hook.Got()) }
	vaultDir := filepath.Join(h.data, "vault")

	if out, err := check(); err != nil || !strings.Contains(out, "not published: no NATS given") {
		t.Fatalf("a check without NATS: %v\n%s; want it to say its result is not published", err, out)
	}
	// NATS given but not there: the check's result is printed, and the
	// command fails, saying the alerter did not get it
	if out, err := check("--nats", "nats://"+deadAddr); err == nil || !strings.Contains(err.Error(), "not published for the alerter") || !strings.Contains(out, "no damage found") {
		t.Fatalf("a check with NATS unreachable: %v\n%s; want the result, and the failure to publish it", err, out)
	}
	if out, err := check(withNATS...); err != nil || !strings.Contains(out, "no damage found") || !strings.Contains(out, "published on NATS") {
		t.Fatalf("a passing check with NATS: %v\n%s", err, out)
	}

	path := corruptChunkPath(t, h)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	corruptChunk(t, h)
	out, err := check(withNATS...)
	if err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(out, "published on NATS") {
		t.Fatalf("a check of a corrupted chunk: %v\n%s; want the damage, published", err, out)
	}
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 1 }, posts)
	got := hook.Got()[0]
	if got["state"] != "open" || got["rule"] != "vault_check_failed" || got["vault"] != vaultDir {
		t.Fatalf("alert %v; want vault_check_failed open for %s", got, vaultDir)
	}
	if d, _ := got["detail"].(string); !strings.Contains(d, "corrupt") || !strings.Contains(d, rp.ID+" sql1/"+db+", full taken") {
		t.Errorf("alert detail %q; want the damage and %s of sql1/%s", d, rp.ID, db)
	}

	if err := os.WriteFile(path, good, 0o600); err != nil { // the pack put back from a copy
		t.Fatal(err)
	}
	if out, err := check(withNATS...); err != nil || !strings.Contains(out, "no damage found") {
		t.Fatalf("a check after the repair: %v\n%s", err, out)
	}
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 2 }, posts)
	if got := hook.Got(); len(got) != 2 || got[1]["state"] != "resolved" || got[1]["vault"] != vaultDir {
		t.Fatalf("posts %v; want the alert, then its resolution", got)
	}
}
