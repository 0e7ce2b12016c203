package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// restart stops coffer up and starts it again on the same data directory
// and vault; with wipeNATS, NATS's whole store directory is deleted in
// between, as when the NATS cluster and its disks are lost.
func (h *harness) restart(wipeNATS bool) {
	h.t.Helper()
	h.run.stop()
	if wipeNATS {
		dir := filepath.Join(h.data, "nats")
		if _, err := os.Stat(dir); err != nil {
			h.t.Fatalf("NATS's store directory: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			h.t.Fatal(err)
		}
	}
	h.startStack()
}

// halfHourAround ticks sql1/db's schedule every five minutes for half an
// hour from start, a small transaction before each tick and one a second
// either side of at, so that a restore to at off by one second shows.
func (h *harness) halfHourAround(clk *fakeClock, db string, start, at time.Time) {
	h.t.Helper()
	for k := 1; k <= 6; k++ {
		now := start.Add(time.Duration(k) * 5 * time.Minute)
		if now.After(at) && now.Add(-5*time.Minute).Before(at) {
			for _, d := range []time.Duration{-time.Second, time.Second} {
				clk.Set(at.Add(d))
				if _, err := h.sim.Commit(db, 1); err != nil {
					h.t.Fatal(err)
				}
			}
		}
		h.tickAt(clk, db, now, 150*time.Second)
	}
}

// TestRebuildCatalog loses the whole catalog (NATS's store directory
// deleted while coffer is down), rebuilds it from the vault alone with
// `coffer vault rebuild`, and restores to a second noted before the loss:
// the recovery points come back exactly (LSNs, times, retention), so do
// the moments they restore to and the policy, and the restored database
// equals the source as of that second.
func TestRebuildCatalog(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Ledger"
	history(t, h, clk, db, start, 0) // protected, its first full taken
	at := start.Add(11 * time.Minute)
	h.halfHourAround(clk, db, start, at)
	want, err := h.sim.ContentHash(db, at)
	if err != nil {
		t.Fatal(err)
	}
	pitr := h.mustCoffer("policy", "show", "pitr")
	rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	ranges := cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+db)
	if len(rps) != 7 || len(ranges) != 1 {
		t.Fatalf("%d recovery points in %d ranges; want a full and 6 logs, one range", len(rps), len(ranges))
	}

	h.restart(true)
	if got := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db); len(got) != 0 {
		t.Fatalf("%d recovery points listed after NATS's store was deleted; want none", len(got))
	}
	out := h.mustCoffer("vault", "rebuild")
	t.Logf("coffer vault rebuild:\n%s", out)
	if !strings.Contains(out, "7 manifests in the vault: 7 recovery points recorded, 0 already in the catalog") ||
		!strings.Contains(out, "1 policies put back from the vault's copy: pitr") {
		t.Errorf("rebuild printed:\n%s\nwant 7 of 7 recorded, the policy put back", out)
	}
	h.eventually("the policy put back", func() bool { got, err := h.coffer("policy", "show", "pitr"); return err == nil && got == pitr })
	got := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	if !reflect.DeepEqual(got, rps) {
		t.Errorf("recovery points after the rebuild:\n%+v\nwant as before the loss:\n%+v", got, rps)
	}
	if got := cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+db); !reflect.DeepEqual(got, ranges) {
		t.Errorf("ranges after the rebuild %+v; want as before the loss %+v", got, ranges)
	}
	// idempotent: a second rebuild finds everything recorded; a record
	// whose manifest is not in the vault is kept unless --prune says
	gone := &cofferv1.RecoveryPoint{Id: "rp-gone", Manifest: "rp-gone", Database: &cofferv1.DatabaseRef{Instance: "sql1", Database: "Gone"}}
	if _, err := h.run.cat.Bucket(cofferv1.BucketRecoveryPoints).Put(t.Context(), catalog.Key("sql1", "Gone", "rp-gone"), gone); err != nil {
		t.Fatal(err)
	}
	if out := h.mustCoffer("vault", "rebuild"); !strings.Contains(out, "0 recovery points recorded, 7 already in the catalog kept") ||
		!strings.Contains(out, "1 records name a manifest not in the vault (kept; --prune deletes them): sql1/Gone rp-gone") {
		t.Errorf("a second rebuild printed:\n%s\nwant nothing recorded, 7 kept, sql1/Gone rp-gone named", out)
	}
	if out := h.mustCoffer("vault", "rebuild", "--prune"); !strings.Contains(out, "1 of the 1 records whose manifest is not in the vault deleted") {
		t.Errorf("a rebuild with --prune printed:\n%s\nwant the record without a manifest deleted", out)
	}
	if got := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Gone"); len(got) != 0 {
		t.Errorf("%d recovery points of sql1/Gone after a rebuild with --prune; want none", len(got))
	}

	// the instance's credentials were in the lost catalog only: a restore
	// names what is missing until it is registered again
	target := "Ledger at " + at.Format("150405")
	if out, err := h.coffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", target, "--wait"); err == nil ||
		!strings.Contains(err.Error(), `instance "sql1" is not registered`) {
		t.Errorf("restore before the instance is registered again: %v\n%s\nwant a refusal naming the instance", err, out)
	}
	h.register(db)
	h.mustCoffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", target, "--wait")
	if got, err := h.sim.ContentHash(target, time.Time{}); err != nil || got != want {
		t.Errorf("restored to %v after the rebuild: content hash %s (%v); want the source's as of then, %s", at, got, err, want)
	}
}
