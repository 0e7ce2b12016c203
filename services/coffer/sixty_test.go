package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

var sixtyDays = flag.Int("sixty.days", 60, "days TestSixtyDays simulates")

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// backupRow is one msdb.dbo.backupset row: the simulator's own record of
// every backup ever taken, independent of coffer's catalog.
type backupRow struct {
	typ               string // D, I, L
	first, last, ckpt string
	diffBase          string
	copyOnly          bool
	start, finish     time.Time
}

// TestSixtyDays drives sixty simulated days of one policy (weekly full,
// daily differential, 15-minute logs, daily, weekly and monthly retention)
// through every service against the simulator under a running workload,
// then checks that the recovery points kept are exactly the ones the
// policy promises, that kept points restore to the source's content, and
// that the vault holds no chunk no manifest needs.
func TestSixtyDays(t *testing.T) {
	if testing.Short() {
		t.Skip("sixty simulated days take a while")
	}
	t.Parallel() // beside the other long tests (make test)
	h, clk, start := clockedHarness(t)
	const db = "Ledger"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	h.setPolicy("gfs", `{"full":{"frequency":"weekly","days":[0],"hour":1},
		"differential":{"days":[1,2,3,4,5,6],"hour":1},"log":{"every":"15m"},
		"retention":{"full":"14d","differential":"14d","log":"7d","weekly":{"day":0,"count":4},"monthly":{"day":0,"count":2}},
		"compression":true}`)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "gfs")

	ctx := context.Background()
	waitIdle := func() { h.waitIdle(db) }
	waitIdle()

	end := start.Add(time.Duration(*sixtyDays) * 24 * time.Hour)
	began := time.Now()
	for now := start.Add(15 * time.Minute); !now.After(end); now = now.Add(15 * time.Minute) {
		// the workload: a transaction every five minutes
		for k := 2; k >= 0; k-- {
			clk.Set(now.Add(-time.Duration(k) * 5 * time.Minute))
			if _, err := h.sim.Commit(db, 2); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(now)
		if err := h.run.scheduler.Tick(ctx, now); err != nil {
			t.Fatalf("tick at %v: %v", now, err)
		}
		waitIdle()
		if now.Hour() == 0 && now.Minute() == 0 {
			t.Logf("day %d done after %v", int(now.Sub(start).Hours()/24), time.Since(began).Round(time.Millisecond))
		}
		if now.Minute() == 0 && now.Hour()%6 == 0 {
			if _, _, err := h.run.committer.CollectGarbage(ctx, now); err != nil {
				t.Fatalf("garbage collection at %v: %v", now, err)
			}
		}
	}
	// let the last expiry be handled, then collect twice past the grace
	h.eventually("the last expiries", func() bool {
		jobs := h.jobs()
		return len(jobs) > 0
	})

	rows := backupsets(t, h)
	kept := map[string]*cofferv1.RecoveryPoint{}
	err := h.run.cat.Bucket(cofferv1.BucketRecoveryPoints).List(ctx, catalog.Key("sql1", db), func() proto.Message { return &cofferv1.RecoveryPoint{} },
		func(_ string, m proto.Message) error {
			rp := m.(*cofferv1.RecoveryPoint)
			kept[rp.GetBackup().GetFirstLsn()+"/"+rp.GetBackup().GetLastLsn()] = rp
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := promised(rows, end)
	var missing, extra []string
	for k, r := range want {
		if kept[k] == nil {
			missing = append(missing, fmt.Sprintf("%s %s finished %v", r.typ, k, r.finish))
		}
	}
	for k, rp := range kept {
		if _, ok := want[k]; !ok {
			extra = append(extra, fmt.Sprintf("%s %s finished %v", rp.GetBackup().GetType(), k, rp.GetBackup().GetBackupFinish().AsTime()))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("kept %d recovery points, the policy promises %d;\nmissing: %v\nextra: %v", len(kept), len(want), missing, extra)
	}
	counts := map[string]int{}
	for _, r := range want {
		counts[r.typ]++
	}
	t.Logf("after %d days: %d backups taken, %d kept (%d full, %d differential, %d log)", *sixtyDays, len(rows), len(kept), counts["D"], counts["I"], counts["L"])

	// every kept point restores; check a sample of each kind
	var sample []*cofferv1.RecoveryPoint
	byType := map[cofferv1.BackupType][]*cofferv1.RecoveryPoint{}
	for _, rp := range kept {
		byType[rp.GetBackup().GetType()] = append(byType[rp.GetBackup().GetType()], rp)
	}
	for _, rps := range byType {
		sort.Slice(rps, func(a, b int) bool { return rps[a].GetBackup().GetLastLsn() < rps[b].GetBackup().GetLastLsn() })
		sample = append(sample, rps[0], rps[len(rps)-1])
	}
	for k, rp := range sample {
		target := fmt.Sprintf("Ledger_check_%d", k)
		job := cofferJSON[gateway.Job](h, "restore", "sql1/"+db, "--point", rp.GetId(), "--as", target, "--wait")
		if job.State != "succeeded" {
			t.Fatalf("restore of %s: %+v", rp.GetId(), job)
		}
		want, err := h.sim.ContentHash(db, rp.GetBackup().GetBackupStart().AsTime())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := h.sim.ContentHash(target, time.Time{}); got != want {
			t.Errorf("restored %s (%v at %v): hash %s, want %s", rp.GetId(), rp.GetBackup().GetType(), rp.GetBackup().GetBackupStart().AsTime(), got, want)
		}
	}

	// no chunk that no manifest needs, once collection has run past the
	// grace period with nothing in flight
	for k := 1; k <= 2; k++ {
		if _, _, err := h.run.committer.CollectGarbage(ctx, end.Add(time.Duration(k)*3*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	assertNoGarbage(t, h)
}

// promised computes, independently of coffer's retention code, the backups
// this test's policy keeps at end: each backup's own retention (logs 7
// days, differentials and fulls 14 days, the Sunday full 4 weeks, the
// first Sunday full of a month 2 months), plus everything a kept backup
// needs to restore: the logs back to its base and the base, and a
// differential's full.
func promised(rows []backupRow, end time.Time) map[string]backupRow {
	key := func(r backupRow) string { return r.first + "/" + r.last }
	keep := map[string]backupRow{}
	monthSeen := map[string]bool{}
	sort.Slice(rows, func(a, b int) bool { return rows[a].finish.Before(rows[b].finish) })
	for _, r := range rows {
		var exp time.Time
		switch r.typ {
		case "L":
			exp = r.finish.Add(7 * 24 * time.Hour)
		case "I":
			exp = r.finish.Add(14 * 24 * time.Hour)
		case "D":
			exp = r.finish.Add(14 * 24 * time.Hour)
			if !r.copyOnly && r.finish.Weekday() == time.Sunday {
				exp = r.finish.AddDate(0, 0, 28)
				m := r.finish.Format("2006-01")
				if !monthSeen[m] {
					monthSeen[m] = true
					exp = r.finish.AddDate(0, 2, 0)
				}
			}
		}
		if exp.After(end) {
			keep[key(r)] = r
		}
	}
	// dependencies, to a fixed point
	for changed := true; changed; {
		changed = false
		for _, r := range keep {
			for _, d := range needs(rows, r) {
				if _, ok := keep[key(d)]; !ok {
					keep[key(d)] = d
					changed = true
				}
			}
		}
	}
	return keep
}

// needs returns what restoring r needs directly.
func needs(rows []backupRow, r backupRow) []backupRow {
	switch r.typ {
	case "I":
		for _, f := range rows {
			if f.typ == "D" && !f.copyOnly && f.ckpt == r.diffBase {
				return []backupRow{f}
			}
		}
	case "L":
		// the first log after a base needs only that base: the latest full
		// or differential whose end it covers (rule 4)
		var base *backupRow
		for k := range rows {
			b := rows[k]
			if (b.typ == "D" && !b.copyOnly || b.typ == "I") && lsnLE(r.first, b.last) && lsnLess(b.last, r.last) {
				if base == nil || lsnLess(base.last, b.last) {
					base = &rows[k]
				}
			}
		}
		if base != nil {
			return []backupRow{*base}
		}
		// any other log needs the one before it
		for _, p := range rows {
			if p.typ == "L" && !p.copyOnly && p.last == r.first {
				return []backupRow{p}
			}
		}
	}
	return nil
}

func lsnLess(a, b string) bool { return len(a) < len(b) || len(a) == len(b) && a < b }
func lsnLE(a, b string) bool   { return a == b || lsnLess(a, b) }

func backupsets(t *testing.T, h *harness) []backupRow {
	t.Helper()
	db, err := sql.Open("sqlserver", h.simDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT type, first_lsn, last_lsn, checkpoint_lsn, differential_base_lsn, is_copy_only, backup_start_date, backup_finish_date
		FROM msdb.dbo.backupset WHERE database_name = N'Ledger' ORDER BY backup_set_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []backupRow
	for rows.Next() {
		var r backupRow
		var ckpt, base sql.NullString
		if err := rows.Scan(&r.typ, &r.first, &r.last, &ckpt, &base, &r.copyOnly, &r.start, &r.finish); err != nil {
			t.Fatal(err)
		}
		r.ckpt, r.diffBase = ckpt.String, base.String
		out = append(out, r)
	}
	return out
}

func assertNoGarbage(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	needed := map[string]bool{}
	v := h.run.vault
	v.ListManifests(ctx, func(id string) error {
		m, err := v.GetManifest(ctx, id)
		if err != nil {
			t.Fatalf("manifest %s: %v", id, err)
		}
		for _, c := range m.Chunks {
			needed[c.ID] = true
		}
		return nil
	})
	var garbage []string
	v.ListChunks(ctx, func(c vault.ChunkInfo) error {
		if !needed[c.ID] {
			garbage = append(garbage, c.ID)
		}
		return nil
	})
	if len(garbage) > 0 {
		t.Errorf("the vault holds %d chunks no manifest needs", len(garbage))
	}
}
