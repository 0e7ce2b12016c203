package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestChainBreaks: a log backup by another tool, a full by another tool,
// a switch to SIMPLE recovery and back, and a restore over the database
// each raise a chain-broken event with its reason, and the next backup is
// a full that heals the chain and says why; every recovery point `coffer
// rp list` shows stays restorable.
func TestChainBreaks(t *testing.T) {
	h, clk, start := clockedHarness(t)
	const db = "Ledger"
	h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{})
	h.sim.Commit(db, 4)
	h.register(db)
	h.setPolicy("p", `{"full":{"frequency":"weekly","days":[0],"hour":1},
		"differential":{"days":[1,2,3,4,5,6],"hour":1},"log":{"every":"15m"},
		"retention":{"full":"14d","differential":"14d","log":"7d"}}`)

	// chain-broken events, as anyone listening sees them
	b, err := daemon.NewBus(h.run.nc, "test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var breaks []string
	sub, err := b.Consume(t.Context(), bus.ConsumerSpec{Stream: cofferv1.StreamJobs, Durable: "test-breaks",
		FilterSubjects: []string{cofferv1.SubjectChainBroken}}, func(_ context.Context, m *bus.Message) error {
		var ev cofferv1.ChainBroken
		if err := m.Decode(&ev); err != nil {
			return err
		}
		mu.Lock()
		breaks = append(breaks, ev.GetReason())
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Stop)
	h.mustCoffer("protect", "sql1/"+db, "--policy", "p")

	h.waitIdle(db)
	now := start
	tick := func(until time.Time) {
		for now.Before(until) {
			now = now.Add(15 * time.Minute)
			h.tickAt(clk, db, now, 5*time.Minute)
		}
	}
	exec := h.exec
	rps := func() []gateway.RecoveryPoint {
		return cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
	}
	// healed waits for a new break and returns the full that healed it
	healed := func(what string, k int, want string) {
		t.Helper()
		h.eventually("the chain-broken event after "+what, func() bool { mu.Lock(); defer mu.Unlock(); return len(breaks) > k })
		mu.Lock()
		reason := breaks[k]
		mu.Unlock()
		if !strings.Contains(reason, want) {
			t.Errorf("%s: chain broken because %q, want it to say %q", what, reason, want)
		}
		all := rps()
		last := all[len(all)-1]
		if last.Type != "full" || !strings.Contains(last.HealsBreak, want) {
			t.Errorf("%s: the latest point is a %s healing %q, want a full that says the chain broke because %q", what, last.Type, last.HealsBreak, want)
		}
	}
	discover := func(model string) {
		t.Helper()
		h.mustCoffer("instance", "discover", "sql1")
		h.eventually("discovery of "+model, func() bool {
			for _, d := range cofferJSON[[]gateway.Database](h, "db", "list", "sql1") {
				if d.Name == db && d.RecoveryModel == model {
					return true
				}
			}
			return false
		})
	}

	tick(start.Add(30 * time.Minute))
	// 1. another tool takes a log backup
	exec("BACKUP LOG [Ledger] TO DISK = @p1", filepath.Join(t.TempDir(), "other.trn"))
	tick(now.Add(15 * time.Minute))
	healed("a foreign log backup", 0, "log backup was taken outside coffer")

	// 2. another tool takes a full: Monday's differential becomes a full
	tick(start.Add(24 * time.Hour))
	exec("BACKUP DATABASE [Ledger] TO DISK = @p1", filepath.Join(t.TempDir(), "other.bak"))
	tick(start.Add(25 * time.Hour))
	healed("a foreign full backup", 1, "full backup was taken outside coffer")

	// 3. SIMPLE and back: logs pause, then a full restarts the chain
	exec("ALTER DATABASE [Ledger] SET RECOVERY SIMPLE")
	discover("SIMPLE")
	tick(now.Add(30 * time.Minute))
	exec("ALTER DATABASE [Ledger] SET RECOVERY FULL")
	discover("FULL")
	tick(now.Add(15 * time.Minute))
	healed("SIMPLE and back", 2, "SIMPLE")

	// 4. a restore over the database
	tick(now.Add(30 * time.Minute))
	h.mustCoffer("restore", "sql1/"+db, "--latest", "--as", db, "--overwrite", "--wait")
	tick(now.Add(15 * time.Minute))
	healed("a restore over the database", 3, "restored over")

	tick(now.Add(time.Hour))
	for _, rp := range rps() {
		if rp.ChainBreak != "" {
			t.Errorf("recovery point %s (%s at %v) is not restorable: %s", rp.ID, rp.Type, rp.Finish, rp.ChainBreak)
		}
	}
	mu.Lock()
	if len(breaks) != 4 {
		t.Errorf("chain-broken events: %q, want the four breaks only", breaks)
	}
	mu.Unlock()
}
