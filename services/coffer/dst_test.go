package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

// TestDaylightSavingWeek runs a simulated server in Europe/Paris through
// a week of backups spanning the October 2026 change (25 October, 03:00
// CEST became 02:00 CET at 01:00 UTC, so 02:00-03:00 local came twice),
// then restores to random seconds of the week, including seconds of both
// occurrences of the repeated hour, and compares each restored database
// with the source as of that second (the oracle's moments are UTC). A
// moment inside the one log backup during which the offset changed is
// refused with the reason, before anything moves.
func TestDaylightSavingWeek(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated week and its restores take a while")
	}
	t.Parallel() // beside the other long tests (make test)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	start := time.Date(2026, 10, 21, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: start}
	h := startHarness(t, harnessOptions{clock: clk.Now, pages: 64, location: paris})
	const db = "Ledger"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	h.setPolicy("dst", `{"full":{"frequency":"daily","hour":0},"log":{"every":"1m"},"retention":{"full":"7d","log":"7d"}}`)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "dst")
	h.waitIdle(db)

	change := time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC)
	// a log backup every hour, every 15 minutes around the change, and
	// one half a minute either side of it
	var ticks []time.Time
	for now := start.Add(time.Hour); !now.After(start.Add(7 * 24 * time.Hour)); now = now.Add(time.Hour) {
		ticks = append(ticks, now)
		if now.Equal(change.Add(-time.Hour)) {
			ticks = append(ticks, now.Add(15*time.Minute), now.Add(30*time.Minute), now.Add(45*time.Minute), change.Add(-30*time.Second))
		}
		if now.Equal(change) {
			ticks[len(ticks)-1] = change.Add(30 * time.Second)
			ticks = append(ticks, now.Add(15*time.Minute), now.Add(30*time.Minute), now.Add(45*time.Minute))
		}
	}
	last := start
	for _, now := range ticks {
		// a transaction every 10 minutes, every minute near the change
		every := 10 * time.Minute
		if now.After(change.Add(-2*time.Hour)) && now.Before(change.Add(2*time.Hour)) {
			every = time.Minute
		}
		for at := last.Truncate(time.Minute).Add(every + 17*time.Second); at.Before(now); at = at.Add(every) {
			clk.Set(at)
			if _, err := h.sim.Commit(db, 2); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(now)
		if err := h.run.scheduler.Tick(t.Context(), now); err != nil {
			t.Fatalf("tick at %v: %v", now, err)
		}
		h.waitIdle(db)
		last = now
	}

	rng := rand.New(rand.NewPCG(25, 10))
	second := func(from time.Time, span time.Duration) time.Time {
		return from.Add(time.Duration(rng.Int64N(int64(span/time.Second))) * time.Second)
	}
	var moments []time.Time
	for range 4 {
		moments = append(moments, second(change.Add(-time.Hour+time.Second), time.Hour-time.Minute)) // first 02:xx (CEST)
	}
	for range 4 {
		moments = append(moments, second(change.Add(time.Minute), time.Hour-time.Minute)) // second 02:xx (CET)
	}
	for range 4 {
		moments = append(moments, second(start.Add(2*time.Hour), 6*24*time.Hour))
	}
	for k, at := range moments {
		target := fmt.Sprintf("Ledger at %s", at.Format("0102-150405"))
		h.mustCoffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", target, "--wait")
		want, err := h.sim.ContentHash(db, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.sim.ContentHash(target, time.Time{})
		if err != nil {
			t.Fatalf("restore %d to %v (%s in Paris): %v", k, at, at.In(paris).Format("15:04:05 MST"), err)
		}
		if got != want {
			t.Errorf("restore %d to %v (%s in Paris): content hash %s; want the source's as of then %s",
				k, at, at.In(paris).Format("15:04:05 MST"), got, want)
		}
	}

	// inside the log backup during which the offset changed
	at := change.Add(-10 * time.Second)
	out, err := h.coffer("restore", "sql1/"+db, "--time", at.Format(time.RFC3339), "--as", "Ledger refused", "--wait")
	if err == nil || !strings.Contains(out+err.Error(), "daylight saving") {
		t.Errorf("restore to %v: got %v, %s; want a refusal naming daylight saving", at, err, out)
	}
	if exists, _ := h.sim.ContentHash("Ledger refused", time.Time{}); exists != "" {
		t.Errorf("the refused restore created database %q", "Ledger refused")
	}
}
