package main

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/services/gateway"
)

// TestSoftDelete: a deleted recovery point is hidden from the listing and
// from restores but listed with --deleted; an undelete brings it back and
// it restores exactly. A full a kept log needs, an unknown point, one
// already deleted and the undelete of one that is not are refused with
// the reason; unprotect --delete-data soft-deletes every point of the
// database.
func TestSoftDelete(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Ledger"
	h.protected(db)
	clk.Set(start.Add(time.Minute))
	if _, err := h.sim.Commit(db, 3); err != nil {
		t.Fatal(err)
	}
	h.mustCoffer("backup", "sql1/"+db, "--type", "log", "--wait")
	want, err := h.sim.ContentHash(db, time.Time{}) // nothing is committed after the log
	if err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) []gateway.RecoveryPoint {
		t.Helper()
		return cofferJSON[[]gateway.RecoveryPoint](h, append([]string{"rp", "list", "sql1/" + db}, args...)...)
	}
	rps := list()
	if len(rps) != 2 || rps[0].Type != "full" || rps[1].Type != "log" {
		t.Fatalf("recovery points %+v, want a full and a log", rps)
	}
	full, log := rps[0].ID, rps[1].ID

	refused := func(wantErr string, args ...string) {
		t.Helper()
		out, err := h.coffer(args...)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("coffer %s: %v (%s), want an error saying %q", strings.Join(args, " "), err, out, wantErr)
		}
	}
	refused("no recovery point \"rp-nope\"", "rp", "delete", "rp-nope")
	refused("--with-dependents", "rp", "delete", full)
	refused(log, "rp", "delete", full) // names the log that needs it
	refused("is not deleted", "rp", "undelete", log)
	if got := list(); len(got) != 2 || got[0].Deleted != nil || got[1].Deleted != nil {
		t.Fatalf("after refusals: %+v, want both points as they were", got)
	}

	out := h.mustCoffer("rp", "delete", log)
	if !strings.Contains(out, "deleted 1 recovery point(s)") || !strings.Contains(out, "coffer rp undelete") {
		t.Errorf("rp delete said %q", out)
	}
	if got := list(); len(got) != 1 || got[0].ID != full {
		t.Fatalf("listing after the delete: %+v, want the full alone", got)
	}
	all := list("--deleted")
	if len(all) != 2 || all[1].ID != log || all[1].Deleted == nil || all[1].RestorableUntil == nil || all[1].DeletedBy == "" {
		t.Fatalf("listing with --deleted: %+v, want the log marked deleted, by whom and until when", all)
	}
	if d := all[1].RestorableUntil.Sub(*all[1].Deleted); d != 14*24*time.Hour {
		t.Errorf("restorable for %v after the delete, want 14 days", d)
	}
	if table := h.mustCoffer("rp", "list", "sql1/"+db, "--deleted"); !strings.Contains(table, "DELETED") {
		t.Errorf("rp list --deleted does not mark the deleted point:\n%s", table)
	}
	refused("already deleted", "rp", "delete", log)
	refused("is deleted", "restore", "sql1/"+db, "--point", log, "--as", "Ledger too soon")

	h.mustCoffer("rp", "undelete", log)
	if got := list(); len(got) != 2 || got[1].ID != log || got[1].Deleted != nil {
		t.Fatalf("listing after the undelete: %+v, want both points", got)
	}
	h.mustCoffer("restore", "sql1/"+db, "--point", log, "--as", "Ledger back", "--wait")
	if got, err := h.sim.ContentHash("Ledger back", time.Time{}); err != nil || got != want {
		t.Errorf("restored after the undelete: content %s (%v), want the source's %s", got, err, want)
	}

	out = h.mustCoffer("unprotect", "sql1/"+db, "--delete-data")
	if !strings.Contains(out, "deleted 2 recovery point(s)") {
		t.Errorf("unprotect --delete-data said %q", out)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("listing after unprotect --delete-data: %+v, want nothing", got)
	}
	all = list("--deleted")
	if len(all) != 2 || slices.ContainsFunc(all, func(rp gateway.RecoveryPoint) bool { return rp.Deleted == nil }) {
		t.Errorf("listing with --deleted after unprotect --delete-data: %+v, want both points deleted", all)
	}
	for _, rp := range all {
		if want := cmp.Or(userName(), "the API") + " from 127.0.0.1"; rp.DeletedBy != want {
			t.Errorf("%s deleted by %q, want %q", rp.ID, rp.DeletedBy, want)
		}
	}
	h.eventually("protection to stop", func() bool {
		for _, d := range cofferJSON[[]gateway.Database](h, "db", "list", "sql1") {
			if d.Name == db {
				return !d.Protected
			}
		}
		return false
	})
	refused("unknown flag: --delete-data", "protect", "sql1/"+db, "--delete-data")

	// past the window (the committer's clock): no undelete, and garbage
	// collection deletes the points, then frees their chunks
	clk.Set(start.Add(15 * 24 * time.Hour))
	refused("window has ended", "rp", "undelete", log)
	if _, _, err := h.run.committer.CollectGarbage(t.Context(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	if all := list("--deleted"); len(all) != 0 {
		t.Errorf("listing with --deleted after the window's collection: %+v, want nothing", all)
	}
	if n, _, err := h.run.committer.CollectGarbage(t.Context(), clk.Now().Add(time.Hour)); err != nil || n == 0 {
		t.Errorf("the collection after: %d chunks freed (%v), want the deleted points'", n, err)
	}
	refused("no recovery point", "rp", "undelete", log)
}
