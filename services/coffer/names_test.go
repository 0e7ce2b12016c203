package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/oracle"
	"github.com/cofferhq/coffer/services/gateway"
)

// hostileName is one entry of testdata/database-names.json.
type hostileName struct {
	Name string `json:"name"`
	Why  string `json:"why"`
	// Needs is "case-sensitive" for a case twin, which only a
	// case-sensitive server collation keeps apart from its sibling.
	Needs string `json:"needs,omitempty"`
	// Refused, when set, is what coffer's protect says instead of
	// protecting the name; the test expects the refusal.
	Refused string `json:"refused,omitempty"`
}

// readHostileNames reads the corpus and checks that every name is one
// SQL Server accepts: a sysname of 1 to 128 UTF-16 code units, no two
// the same database under a case-sensitive collation (trailing spaces
// ignored), nor under a case-insensitive one unless marked as needing a
// case-sensitive collation.
func readHostileNames(t *testing.T) []hostileName {
	t.Helper()
	b, err := os.ReadFile("testdata/database-names.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Names []hostileName `json:"names"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("testdata/database-names.json: %v", err)
	}
	cs, ci := map[string]string{}, map[string]string{}
	for _, n := range doc.Names {
		if u := utf16Len(n.Name); u < 1 || u > 128 {
			t.Fatalf("corpus name %q is %d UTF-16 code units; SQL Server allows 1 to 128", n.Name, u)
		}
		key := strings.TrimRight(n.Name, " ")
		if other, ok := cs[key]; ok {
			t.Fatalf("corpus names %q and %q are one database to SQL Server", other, n.Name)
		}
		cs[key] = n.Name
		if n.Needs == "case-sensitive" {
			continue
		}
		if other, ok := ci[strings.ToLower(key)]; ok {
			t.Fatalf("corpus names %q and %q are one database under a case-insensitive collation: mark one as needing a case-sensitive one", other, n.Name)
		}
		ci[strings.ToLower(key)] = n.Name
	}
	return doc.Names
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

// derivedFilesValid reports whether CREATE DATABASE without file names
// works for name on SQL Server: it names the data file name.mdf and the
// log name_log (name_log.ldf), so the name must make a file name on
// Windows and Linux and leave room for _log in a sysname.
func derivedFilesValid(name string) bool {
	return utf16Len(name) <= 123 && !strings.ContainsAny(name, `/\:*?"<>|`) && strings.IndexFunc(name, unicode.IsControl) < 0
}

// prefixed is name with a hostile prefix, cut to a sysname: another
// database to restore database number k of the corpus to.
func prefixed(prefix string, k int, name string) string {
	r := []rune(fmt.Sprintf("%s%d]' ", prefix, k) + name)
	for utf16Len(string(r)) > 128 {
		r = r[:len(r)-1]
	}
	return string(r)
}

// alias spells name otherwise, as SQL Server still takes it to mean the
// same database: with a trailing space, or in upper case under a
// case-insensitive collation; name itself when neither fits a sysname.
func alias(name string, caseSensitive bool) string {
	if up := strings.ToUpper(name); !caseSensitive && up != name && strings.EqualFold(up, name) && utf16Len(up) <= 128 {
		return up
	}
	if utf16Len(name) < 128 {
		return name + " "
	}
	return name
}

// TestHostileNames creates a database for every name of
// testdata/database-names.json (names SQL Server allows: spaces at either
// end, ], ', ;, /, %, +, &, !, line breaks, case twins, Unicode, the
// longest), writes rows into each with the portable oracle, protects them
// all through the CLI, takes a full and a log backup of each, and
// restores each in one of three ways: to the latest moment as a new name,
// to a point in time as a new name, or over itself from the full, named
// as given or as SQL Server also reads it ("Sales " or SALES for Sales),
// after which the tail-log backup the overwrite took must restore the
// rows no other backup held. Some are also test-restored (coffer verify)
// and restored as files, whose restore.sql another server runs as sqlcmd
// would. Every restore is checked twice: its rows against the oracle's
// record and its pages against the simulator's content hash as of the
// same moment.
//
// It runs twice: in URL mode against a case-sensitive server, where case
// twins are two databases, and in disk mode against a case-insensitive
// one, without the twins. With -short (the race suite) it runs only the
// first, on a sample of the names: the twins, the line breaks and every
// sixth.
func TestHostileNames(t *testing.T) {
	corpus := readHostileNames(t)
	if testing.Short() {
		var sample []hostileName
		for k, n := range corpus {
			if k%6 == 0 || strings.EqualFold(n.Name, "sales") || strings.IndexFunc(n.Name, unicode.IsControl) >= 0 {
				sample = append(sample, n)
			}
		}
		corpus = sample
	}
	t.Run("url, case-sensitive", func(t *testing.T) {
		hostileNames(t, corpus, harnessOptions{url: true, trustCA: true, caseSensitive: true})
	})
	if testing.Short() {
		return
	}
	t.Run("disk, case-insensitive", func(t *testing.T) {
		var names []hostileName
		for _, n := range corpus {
			if n.Needs != "case-sensitive" {
				names = append(names, n)
			}
		}
		hostileNames(t, names, harnessOptions{})
	})
}

func hostileNames(t *testing.T, corpus []hostileName, o harnessOptions) {
	began := time.Now()
	start := time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: start}
	at := func(d time.Duration) time.Time { return start.Add(d) }
	o.clock, o.pages = clk.Now, 32
	h := startHarness(t, o)
	ctx := t.Context()
	srv := openServer(t, h.simDSN)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := srv.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var dataPath string
	if err := srv.QueryRowContext(ctx, "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260))").Scan(&dataPath); err != nil {
		t.Fatal(err)
	}

	// the timeline, the same for every database: table and first rows,
	// the full, more rows, the point-in-time target, more rows, the log,
	// rows only a tail-log backup holds
	var (
		tRows1 = at(5 * time.Second)
		tFull  = at(10 * time.Second)
		tRows2 = at(15 * time.Second)
		tPITR  = at(20 * time.Second)
		tRows3 = at(25 * time.Second)
		tLog   = at(30 * time.Second)
		tRows4 = at(35 * time.Second)
	)
	type check struct {
		what   string
		srv    *sql.DB
		other  *mssqlsim.Instance // the instance that holds target, when not sql1
		target string
		asOf   time.Time
		hash   string // the simulator's content hash of the source as of asOf
	}
	type subject struct {
		hostileName
		k int
		w *oracle.Workload
		// hashes are the source's content hashes as of the moments
		// restored to (zero: now), taken before any restore
		hashes map[time.Time]string
		full   gateway.RecoveryPoint
		checks []check
		tail   *check // the overwritten database's tail-log backup, restored
	}
	var subjects, protected []*subject
	for k, n := range corpus {
		q := "CREATE DATABASE " + quoteIdent(n.Name)
		if !derivedFilesValid(n.Name) {
			// as on SQL Server, such a name needs its files named
			q += fmt.Sprintf(" ON (NAME = %s, FILENAME = N'%shostile%02d.mdf') LOG ON (NAME = %s, FILENAME = N'%shostile%02d_log.ldf')",
				quoteIdent(n.Name), dataPath, k, quoteIdent(fmt.Sprintf("hostile%02d_log", k)), dataPath, k)
		}
		exec(q)
		exec("ALTER DATABASE " + quoteIdent(n.Name) + " SET RECOVERY FULL")
		w, err := oracle.New(ctx, srv, n.Name)
		if err != nil {
			t.Fatalf("%q: %v", n.Name, err)
		}
		s := &subject{hostileName: n, k: k, w: w}
		subjects = append(subjects, s)
		if n.Refused == "" {
			protected = append(protected, s)
		}
	}
	insert := func(now time.Time, n int) {
		t.Helper()
		clk.Set(now)
		for _, s := range subjects {
			if _, err := s.w.Insert(ctx, n); err != nil {
				t.Fatalf("%q: %v", s.Name, err)
			}
		}
	}
	insert(tRows1, 2)

	names := make([]string, len(corpus))
	for k, n := range corpus {
		names[k] = n.Name
	}
	h.register(names...)
	if o.caseSensitive {
		// a name that is none of the case twins but differs from them
		// only in case is refused, naming them
		out, err := h.coffer("backup", "sql1/sAlEs")
		if err == nil || !strings.Contains(err.Error(), `"SALES", "Sales", "sales" differ from it only in case`) {
			t.Errorf("backup of sql1/sAlEs beside Sales, sales and SALES: %v\n%s", err, out)
		}
	}
	clk.Set(tFull)
	args := []string{"protect"}
	for _, s := range subjects {
		if s.Refused == "" {
			args = append(args, "sql1/"+s.Name)
			continue
		}
		out, err := h.coffer("protect", "sql1/"+s.Name)
		if err == nil || !strings.Contains(out+err.Error(), s.Refused) {
			t.Errorf("protect %q: %v\n%s\nwant a refusal saying %q", s.Name, err, out, s.Refused)
		}
	}
	h.mustCoffer(args...)
	// protection queues a first full of each
	h.eventually("the first full of every database", func() bool {
		done := 0
		for _, s := range protected {
			rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+s.Name)
			if len(rps) == 1 && rps[0].Type == "full" {
				s.full = rps[0]
				done++
			}
		}
		for _, j := range h.jobs() {
			if j.State == "failed" {
				t.Fatalf("%s of %q failed: %s", j.Kind, j.Database, j.Error)
			}
		}
		return done == len(protected)
	})
	for _, s := range protected {
		h.waitIdle(s.Name)
	}
	t.Logf("%d databases protected and backed up in full after %v", len(protected), time.Since(began).Round(time.Millisecond))

	insert(tRows2, 1)
	insert(tRows3, 3)
	clk.Set(tLog)
	var jobs []string
	for _, s := range protected {
		jobs = append(jobs, cofferJSON[gateway.Accepted](h, "backup", "sql1/"+s.Name, "--type", "log").JobID)
	}
	h.waitJobs(jobs)
	insert(tRows4, 2)

	// another server, to run the scripts of restores as files on
	other := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", ServerName: "OTHER", CaseSensitive: o.caseSensitive, Now: clk.Now})
	addr, err := other.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	otherDB := openServer(t, (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
	files := t.TempDir()

	for _, s := range protected {
		s.hashes = map[time.Time]string{}
		for _, asOf := range []time.Time{tFull, tPITR, tLog, {}} {
			hash, err := h.sim.ContentHash(s.Name, asOf)
			if err != nil {
				t.Fatalf("%q: %v", s.Name, err)
			}
			s.hashes[asOf] = hash
		}
	}
	// restore each: to the latest moment, to a moment between two
	// transactions, or over itself from the full; test-restore some and
	// restore others as files
	jobs = jobs[:0]
	asFiles := map[string]*subject{} // by directory
	overwritten := 0
	for k, s := range protected {
		var c check
		var args []string
		switch k % 3 {
		case 0:
			c = check{what: "latest", target: prefixed("r", s.k, s.Name), asOf: tLog}
			args = []string{"--latest", "--as", c.target}
		case 1:
			c = check{what: "to a moment", target: prefixed("r", s.k, s.Name), asOf: tPITR}
			args = []string{"--time", tPITR.Format(time.RFC3339), "--as", c.target}
		case 2:
			// named as given or otherwise spelt, the database is
			// overwritten, and its tail-log backup taken first
			as := s.Name
			if overwritten++; overwritten%2 == 1 {
				as = alias(s.Name, o.caseSensitive)
			}
			c = check{what: fmt.Sprintf("over itself as %q", as), target: s.Name, asOf: tFull}
			args = []string{"--point", s.full.ID, "--as", as, "--overwrite"}
			s.tail = &check{what: "its tail-log backup", srv: srv, target: prefixed("t", s.k, s.Name), asOf: tRows4, hash: s.hashes[time.Time{}]}
		}
		c.srv, c.hash = srv, s.hashes[c.asOf]
		s.checks = append(s.checks, c)
		jobs = append(jobs, cofferJSON[gateway.Accepted](h, append([]string{"restore", "sql1/" + s.Name}, args...)...).JobID)
		if k%5 == 0 {
			jobs = append(jobs, cofferJSON[gateway.Accepted](h, "verify", "sql1/"+s.Name).JobID)
		}
		if k%7 == 3 || !derivedFilesValid(s.Name) && strings.IndexFunc(s.Name, unicode.IsControl) >= 0 {
			dir := filepath.Join(files, fmt.Sprint(s.k))
			asFiles[dir] = s
			s.checks = append(s.checks, check{what: "as files, run on another server", srv: otherDB, other: other, target: s.Name, asOf: tPITR, hash: s.hashes[tPITR]})
			jobs = append(jobs, cofferJSON[gateway.Accepted](h, "restore", "sql1/"+s.Name, "--time", tPITR.Format(time.RFC3339), "--to-dir", dir, "--as", s.Name).JobID)
		}
	}
	h.waitJobs(jobs)
	for dir, s := range asFiles {
		runScript(t, otherDB, filepath.Join(dir, "restore.sql"), s.Name)
	}
	// each overwritten database's tail-log backup, restored, holds the
	// rows only it has
	jobs = jobs[:0]
	for _, s := range protected {
		if s.tail == nil {
			continue
		}
		var tail *gateway.RecoveryPoint
		for _, rp := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+s.Name) {
			if rp.Type == "log" && rp.Start != nil && !rp.Start.Before(tRows4) {
				tail = &rp
			}
		}
		if tail == nil {
			t.Errorf("%q (%s) overwritten: no tail-log backup; the rows since its last log backup are lost", s.Name, s.Why)
			continue
		}
		s.checks = append(s.checks, *s.tail)
		jobs = append(jobs, cofferJSON[gateway.Accepted](h, "restore", "sql1/"+s.Name, "--point", tail.ID, "--as", s.tail.target).JobID)
	}
	h.waitJobs(jobs)

	exact, restores := 0, 0
	for _, s := range protected {
		var errs []error
		for _, c := range s.checks {
			restores++
			if err := s.w.Check(ctx, c.srv, c.target, c.asOf); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
			}
			inst := h.sim
			if c.other != nil {
				inst = c.other
			}
			if got, err := inst.ContentHash(c.target, time.Time{}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
			} else if got != c.hash {
				errs = append(errs, fmt.Errorf("%s as %q: content hash %s, want the source's as of %v, %s", c.what, c.target, got, c.asOf.Format(time.TimeOnly), c.hash))
			}
		}
		if len(errs) > 0 {
			t.Errorf("%q (%s): %v", s.Name, s.Why, errors.Join(errs...))
			continue
		}
		exact++
	}
	t.Logf("%d names, %d refused as expected, %d backed up and restored exactly (%d restores checked), in %v",
		len(corpus), len(corpus)-len(protected), exact, restores, time.Since(began).Round(time.Millisecond))
}

// runScript runs a restore.sql as sqlcmd does: it reads it line by line,
// a line of GO alone ends a batch, and a line that starts with : or !! is
// one of sqlcmd's commands (which the test refuses to run: a database name
// must never become one).
func runScript(t *testing.T, db *sql.DB, path, database string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var batch strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.EqualFold(trimmed, "GO"):
			if _, err := db.ExecContext(t.Context(), batch.String()); err != nil {
				t.Errorf("restore.sql of %q: %s: %v", database, batch.String(), err)
				return
			}
			batch.Reset()
		case strings.HasPrefix(trimmed, ":") || strings.HasPrefix(trimmed, "!!"):
			t.Errorf("restore.sql of %q: sqlcmd would run %q as a command:\n%s", database, trimmed, b)
			return
		default:
			batch.WriteString(line)
		}
	}
	if strings.TrimSpace(batch.String()) != "" && !strings.HasPrefix(strings.TrimSpace(batch.String()), "--") {
		t.Errorf("restore.sql of %q ends with a batch and no GO: %q", database, batch.String())
	}
}

// waitJobs waits until every job has ended and fails the test for each
// that failed.
func (h *harness) waitJobs(ids []string) {
	h.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		done, failed := 0, []string(nil)
		for _, j := range h.jobs() {
			if !want[j.ID] || !j.Done() {
				continue
			}
			done++
			if j.State == "failed" {
				failed = append(failed, fmt.Sprintf("%s %s of %q: %s", j.Kind, j.BackupType, j.Database, j.Error))
			}
		}
		if done == len(want) {
			if len(failed) > 0 {
				h.t.Fatalf("%d of %d jobs failed:\n%s", len(failed), len(ids), strings.Join(failed, "\n"))
			}
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d of %d jobs still running after 3 minutes", len(want)-done, len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
