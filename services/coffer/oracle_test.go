package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/oracle"
	"github.com/cofferhq/coffer/services/gateway"
)

// The environment of the conformance suite (make test-mssql): a real SQL
// Server to back up and restore, another for a restore across instances,
// and the staging directory coffer shares with them, here and as the
// servers see it.
const (
	envDSN           = "COFFER_TEST_MSSQL_DSN"
	envDSN2          = "COFFER_TEST_MSSQL_DSN2"
	envStaging       = "COFFER_TEST_MSSQL_STAGING"
	envServerStaging = "COFFER_TEST_MSSQL_SERVER_STAGING"
)

// oracleServer is a SQL Server the portable test writes to or restores
// on.
type oracleServer struct {
	dsn string
	db  *sql.DB
	// pass lets at least d of the server's time go by: the simulator's fake
	// clock moves; a real server's clock is polled until it has.
	pass func(t *testing.T, d time.Duration)
	// gap is the server time between two of the oracle's transactions:
	// long on the fake clock, where it costs nothing, so random seconds
	// land between different transactions; short on a real server.
	gap time.Duration
}

func openServer(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// realServer connects to a real SQL Server, waiting for it to accept
// logins (a container that has just started takes a while).
func realServer(t *testing.T, dsn string) *oracleServer {
	t.Helper()
	db := openServer(t, dsn)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var v string
		err := db.QueryRowContext(t.Context(), "SELECT @@VERSION").Scan(&v)
		if err == nil {
			t.Logf("%s", strings.SplitN(v, "\n", 2)[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SQL Server at %s does not answer: %v", redact(dsn), err)
		}
		time.Sleep(time.Second)
	}
	return &oracleServer{dsn: dsn, db: db, gap: 1100 * time.Millisecond, pass: func(t *testing.T, d time.Duration) {
		t.Helper()
		until := serverNow(t, db).Add(d)
		for serverNow(t, db).Before(until) {
			time.Sleep(20 * time.Millisecond)
		}
	}}
}

// redact hides a DSN's password in messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

func serverNow(t *testing.T, db *sql.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRowContext(t.Context(), "SELECT SYSDATETIME()").Scan(&now); err != nil {
		t.Fatalf("server clock: %v", err)
	}
	return now
}

// TestPortableOracle backs up a database that the portable oracle writes,
// breaks the chain with a log backup coffer did not take, lets coffer heal
// it with a full, and restores to random seconds on both sides of the
// break and across instances, checking every restore with the oracle
// (rows, COUNT and CHECKSUM_AGG, nothing simulator-specific). It runs
// against the simulator always, and against a real SQL Server when
// COFFER_TEST_MSSQL_DSN names one (make test-mssql).
func TestPortableOracle(t *testing.T) {
	t.Run("simulator", func(t *testing.T) {
		clk := &fakeClock{t: time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)}
		// the two servers in two time zones, neither of them UTC: the
		// oracle's times are each server's own, coffer's are UTC
		newYork, err1 := time.LoadLocation("America/New_York")
		kolkata, err2 := time.LoadLocation("Asia/Kolkata")
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		h := startHarness(t, harnessOptions{clock: clk.Now, pages: 64, location: newYork})
		pass := func(t *testing.T, d time.Duration) { clk.Set(clk.Now().Add(d)) }
		other := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", ServerName: "OTHER", DefaultPages: 64, Now: clk.Now, Location: kolkata})
		addr, err := other.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		dsn2 := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String()
		portable(t, h,
			&oracleServer{dsn: h.dsn, db: openServer(t, h.dsn), pass: pass, gap: 5 * time.Second},
			&oracleServer{dsn: dsn2, db: openServer(t, dsn2), pass: pass, gap: 5 * time.Second})
	})
	t.Run("external", func(t *testing.T) {
		dsn := os.Getenv(envDSN)
		if dsn == "" {
			t.Skipf("%s is not set: no real SQL Server to test against (make test-mssql)", envDSN)
		}
		h := startHarness(t, harnessOptions{dsn: dsn, stagingDir: os.Getenv(envStaging), serverStagingDir: os.Getenv(envServerStaging)})
		srv := realServer(t, dsn)
		var srv2 *oracleServer
		if dsn2 := os.Getenv(envDSN2); dsn2 != "" {
			srv2 = realServer(t, dsn2)
		} else {
			t.Logf("%s is not set: no restore to another instance", envDSN2)
		}
		portable(t, h, srv, srv2)
	})
}

// portable runs the scenario on srv, registered as sql1, and restores to
// srv2 as sql2 when it is not nil.
func portable(t *testing.T, h *harness, srv, srv2 *oracleServer) {
	ctx := t.Context()
	// unique, so runs on a shared server do not meet
	name := fmt.Sprintf("coffer_oracle_%d", time.Now().UnixNano())
	var created []func()
	t.Cleanup(func() {
		for _, drop := range created {
			drop()
		}
	})
	dropLater := func(s *oracleServer, db string) {
		created = append(created, func() {
			// the test's context is done by now
			if _, err := s.db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+quoteIdent(db)); err != nil {
				t.Logf("drop %s: %v", db, err)
			}
		})
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := srv.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE DATABASE " + quoteIdent(name))
	dropLater(srv, name)
	exec("ALTER DATABASE " + quoteIdent(name) + " SET RECOVERY FULL")
	w, err := oracle.New(ctx, srv.db, name)
	if err != nil {
		t.Fatal(err)
	}
	insert := func(n int) {
		t.Helper()
		for k := range n {
			srv.pass(t, srv.gap)
			if _, err := w.Insert(ctx, 1+k%3); err != nil {
				t.Fatal(err)
			}
		}
	}
	backup := func(typ string) {
		t.Helper()
		srv.pass(t, 100*time.Millisecond)
		h.mustCoffer("backup", "sql1/"+name, "--type", typ, "--wait")
	}
	rps := func() []gateway.RecoveryPoint {
		return cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+name)
	}

	h.register(name)
	h.setPolicy("portable", `{"full":{"frequency":"weekly","days":[0],"hour":1},"log":{"every":"15m"},
		"retention":{"full":"14d","log":"7d"}}`)
	// protecting takes the first full
	h.mustCoffer("protect", "sql1/"+name, "--policy", "portable")
	h.eventually("the first full", func() bool { return len(rps()) == 1 })
	h.waitIdle(name)
	insert(3)
	backup("log")
	insert(3)
	backup("differential")
	insert(3)
	backup("log")
	insert(2)
	// another tool takes a log backup (a relative path lands in the
	// server's default backup directory): coffer's next log is a full
	srv.pass(t, 100*time.Millisecond)
	exec("BACKUP LOG " + quoteIdent(name) + " TO DISK = N'coffer_oracle_foreign.trn' WITH INIT, FORMAT")
	insert(2)
	backup("log")
	if all := rps(); all[len(all)-1].Type != "full" || !strings.Contains(all[len(all)-1].HealsBreak, "outside coffer") {
		t.Fatalf("after a foreign log backup, the latest point is a %s healing %q, want a full healing the break", all[len(all)-1].Type, all[len(all)-1].HealsBreak)
	}
	insert(3)
	backup("log")

	ranges := cofferJSON[[]gateway.RecoveryRange](h, "rp", "ranges", "sql1/"+name)
	if len(ranges) != 2 {
		t.Fatalf("restorable ranges %+v, want two, either side of the foreign log backup", ranges)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seconds from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2026))
	type restore struct {
		at     time.Time
		target string
		srv    *oracleServer
		flags  []string
	}
	var restores []restore
	for k, r := range ranges {
		for j := range 2 {
			restores = append(restores, restore{at: randomSecond(rng, r.From, r.To), target: fmt.Sprintf("%s_r%d%d", name, k, j), srv: srv})
		}
	}
	if srv2 != nil {
		h.mustCoffer("instance", "add", "sql2", "--dsn", srv2.dsn)
		r := ranges[len(ranges)-1]
		restores = append(restores, restore{at: randomSecond(rng, r.From, r.To), target: name + "_other", srv: srv2, flags: []string{"--target", "sql2"}})
	}
	for _, r := range restores {
		dropLater(r.srv, r.target)
		args := append([]string{"restore", "sql1/" + name, "--time", r.at.Format(time.RFC3339Nano), "--as", r.target, "--wait"}, r.flags...)
		h.mustCoffer(args...)
		// coffer restores to a UTC moment; the oracle's times are the
		// server's
		at := w.ServerTime(r.at)
		must, may := w.Expect(at)
		t.Logf("restored %s as of %v: %d to %d of %d transactions expected", r.target, r.at, must, may, len(w.Txs()))
		if err := w.Check(ctx, r.srv.db, r.target, at); err != nil {
			t.Errorf("restore to %v (%d to %d transactions): %v", r.at, must, may, err)
		}
	}
}

// randomSecond returns a whole second strictly inside (from, to), or the
// middle of a range shorter than that.
func randomSecond(rng *rand.Rand, from, to time.Time) time.Time {
	lo := from.Truncate(time.Second).Add(time.Second)
	span := int64(to.Sub(lo) / time.Second)
	if span < 1 {
		return from.Add(to.Sub(from) / 2)
	}
	return lo.Add(time.Duration(rng.Int64N(span)) * time.Second)
}

// quoteIdent quotes a name as QUOTENAME does.
func quoteIdent(name string) string { return "[" + strings.ReplaceAll(name, "]", "]]") + "]" }
