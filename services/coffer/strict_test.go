package main

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestConcurrentFulls: the first full after protection and an on-demand
// full of one database, at once. SQL Server takes one at a time (3023 for
// the second): coffer runs the second when the first is done, both
// commit, and no chain break is recorded between them, since none
// happened.
func TestConcurrentFulls(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	const db = "Twice"
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sim.Commit(db, 4)
	h.register(db)
	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultStall, Database: db})
	h.mustCoffer("protect", "sql1/"+db)
	h.mustCoffer("backup", "sql1/"+db, "--type", "full")
	h.eventually("the on-demand full to be refused while the first runs", func() bool { return h.sim.Stats().Serialized > 0 })
	remove()
	h.eventually("both fulls committed", func() bool {
		return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 2
	})
	for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db) {
		if rp.Type != "full" || rp.ChainBreak != "" || rp.HealsBreak != "" {
			t.Errorf("recovery point %s: %s, chain break %q, heals %q; want a full and no break", rp.ID, rp.Type, rp.ChainBreak, rp.HealsBreak)
		}
	}
	for _, j := range h.jobs() {
		if strings.Contains(j.Database, db) && j.State != "succeeded" {
			t.Errorf("job %s is %s (%s); want succeeded", j.ID, j.State, j.Error)
		}
	}
	// between the two fulls no log backup ran, so the ranges may show a
	// gap, but never a broken chain
	for _, r := range cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+db) {
		if r.Break != "" && !strings.HasPrefix(r.Break, "no log backup covers") {
			t.Errorf("the ranges show a chain break: %q", r.Break)
		}
	}
}
