package tds

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
)

// testHandler answers a handful of fixed statements.
type testHandler struct {
	mu        sync.Mutex
	lastLogin Login
	lastSQL   string
	params    []Param
	unknown   []string
	started   chan struct{} // a "wait" request has started
	proceed   chan struct{} // lets "backup database" finish
}

func newTestHandler() *testHandler {
	return &testHandler{started: make(chan struct{}, 16), proceed: make(chan struct{})}
}

func (h *testHandler) Login(_ context.Context, l Login) (Session, error) {
	h.mu.Lock()
	h.lastLogin = l
	h.mu.Unlock()
	if l.User != "sa" || l.Password != "pw" {
		return nil, &Error{Number: 18456, State: 1, Severity: 14, Message: "Login failed for user '" + l.User + "'."}
	}
	return &testSession{h: h}, nil
}

type testSession struct{ h *testHandler }

func (s *testSession) Close() {}

// typeColumns has a column of every supported type.
var typeColumns = []Column{
	{Name: "i", Type: Int, Nullable: true},
	{Name: "bi", Type: BigInt, Nullable: true},
	{Name: "b", Type: Bit, Nullable: true},
	{Name: "s", Type: NVarChar, Size: 20, Nullable: true},
	{Name: "smax", Type: NVarChar, Nullable: true},
	{Name: "dt2", Type: DateTime2, Nullable: true},
	{Name: "dt", Type: DateTime, Nullable: true},
	{Name: "lsn", Type: Numeric, Nullable: true},
	{Name: "g", Type: GUID, Nullable: true},
	{Name: "vb", Type: VarBinary, Nullable: true},
	{Name: "si", Type: SmallInt, Nullable: true},
	{Name: "ti", Type: TinyInt, Nullable: true},
}

var (
	testTime2   = time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC)
	testTime    = time.Date(1999, 12, 31, 23, 59, 58, 120e6, time.UTC)
	testGUID    = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
	bigString   = strings.Repeat("ab€日", 25*1024) // 100 Ki characters
	bigBinary   = bytes.Repeat([]byte{0, 1, 2, 0xFE, 0xFF}, 20*1024)
	testDBNames = []string{"master", "tempdb", "model", "msdb", "coffersim"}
)

func (s *testSession) Batch(ctx context.Context, sqlText string, params []Param, w ResultWriter) {
	h := s.h
	h.mu.Lock()
	h.lastSQL, h.params = sqlText, params
	if os.Getenv("TDS_TEST_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "SQL %q params %v\n", sqlText, len(params))
	}
	h.mu.Unlock()
	switch strings.ToLower(strings.TrimSpace(sqlText)) {
	case "select 1", "select 1;": // go-mssqldb pings with "select 1;"
		_ = w.Columns([]Column{{Name: "", Type: Int}})
		_ = w.Row(1)
		_ = w.Done(1)
	case "select types":
		_ = w.Columns(typeColumns)
		check(w.Row(int32(-7), int64(1)<<40, true, "héllo ]'", "short max", testTime2, testTime,
			"34000000012300001", testGUID, []byte{1, 2, 3}, int16(-300), uint8(200)))
		check(w.Row(nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil))
		check(w.Row(7, int64(-1), false, "", bigString, testTime2, testTime,
			uint64(18446744073709551615), [16]byte{15: 1}, bigBinary, 1, 0))
		_ = w.Done(3)
	case "select params", "exec sp_custom":
		_ = w.Columns([]Column{{Name: "n", Type: Int}})
		_ = w.Row(len(params))
		_ = w.Done(1)
	case "raise error":
		_ = w.Message(&Error{Number: 50001, State: 2, Severity: 16, Message: "boom", Proc: "p", Line: 3})
		_ = w.Done(-1)
	case "waitfor delay":
		time.Sleep(300 * time.Millisecond)
		_ = w.Done(-1)
	case "update rows":
		_ = w.Done(42)
	case "update rows twice":
		_ = w.Done(3)
		_ = w.Message(&Error{Number: 0, Severity: 0, Message: "between"})
		_ = w.Done(4)
	case "backup database":
		_ = w.Message(&Error{Number: 3211, State: 1, Severity: 0, Message: "10 percent processed."})
		_ = w.Flush()
		select {
		case <-h.proceed:
		case <-ctx.Done():
			return
		}
		_ = w.Message(&Error{Number: 3211, State: 1, Severity: 0, Message: "100 percent processed."})
		_ = w.Done(-1)
	case "waitfor cancel", "waitfor cancel flushed":
		if strings.HasSuffix(sqlText, "flushed") {
			_ = w.Message(&Error{Number: 1, Severity: 0, Message: "waiting"})
			_ = w.Flush()
		}
		h.started <- struct{}{}
		<-ctx.Done()
		_ = w.Columns([]Column{{Name: "late", Type: Int}}) // discarded
	case "select many":
		_ = w.Columns([]Column{{Name: "n", Type: Int}, {Name: "s", Type: NVarChar, Size: 50}})
		for i := range 10000 {
			if err := w.Row(i, fmt.Sprintf("row %d", i)); err != nil {
				return
			}
		}
		_ = w.Done(10000)
	case "abort connection":
		_ = w.Columns([]Column{{Name: "n", Type: Int}})
		_ = w.Flush()
		w.Abort()
	case "select name from sys.databases":
		_ = w.Columns([]Column{{Name: "name", Type: NVarChar, Size: 128}})
		for _, n := range testDBNames {
			_ = w.Row(n)
		}
		_ = w.Done(int64(len(testDBNames)))
	default:
		h.mu.Lock()
		h.unknown = append(h.unknown, sqlText)
		h.mu.Unlock()
		_ = w.Done(-1)
	}
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

// testLogWriter sends server logs to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer serves a testHandler on a random port until the test ends.
func startServer(t *testing.T) (*Server, string, *testHandler) {
	t.Helper()
	return startServerConfig(t, Config{ServerName: "SIM", VersionMajor: 16, VersionBuild: 4135})
}

// startServerConfig is startServer with a given configuration.
func startServerConfig(t *testing.T, cfg Config) (*Server, string, *testHandler) {
	t.Helper()
	h := newTestHandler()
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := NewServer(cfg, h, logger)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve returned %v after close", err)
		}
		h.mu.Lock()
		if len(h.unknown) > 0 {
			t.Logf("unknown sql: %q", h.unknown)
		}
		h.mu.Unlock()
	})
	return srv, l.Addr().String(), h
}

// openDB opens a database/sql handle on addr with extra DSN parameters.
func openDB(t *testing.T, addr, user, pw, extra string) *sql.DB {
	t.Helper()
	dsn := fmt.Sprintf("sqlserver://%s:%s@%s?encrypt=disable&database=master&app+name=tdstest%s", user, pw, addr, extra)
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLogin(t *testing.T) {
	_, addr, h := startServer(t)
	ctx := testContext(t)

	err := openDB(t, addr, "sa", "wrong", "").PingContext(ctx)
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 18456 || me.Class != 14 {
		t.Fatalf("wrong password: got %v (%#v)", err, me)
	}

	if err := openDB(t, addr, "sa", "pw", "").PingContext(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	h.mu.Lock()
	l := h.lastLogin
	h.mu.Unlock()
	if l.User != "sa" || l.Password != "pw" || l.Database != "master" || l.AppName != "tdstest" {
		t.Errorf("login decoded as %+v", l)
	}
}

func TestResultTypes(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	rows, err := db.QueryContext(testContext(t), "select types")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		i, bi   sql.NullInt64
		b       sql.NullBool
		s, smax sql.NullString
		dt2, dt sql.NullTime
		lsn     sql.NullString
		g       []byte
		vb      []byte
		si, ti  sql.NullInt64
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.i, &r.bi, &r.b, &r.s, &r.smax, &r.dt2, &r.dt, &r.lsn, &r.g, &r.vb, &r.si, &r.ti); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d rows", len(got))
	}

	r := got[0]
	if r.i.Int64 != -7 || r.bi.Int64 != 1<<40 || !r.b.Bool || r.s.String != "héllo ]'" || r.smax.String != "short max" ||
		!r.dt2.Time.Equal(testTime2) || !r.dt.Time.Equal(testTime) || r.lsn.String != "34000000012300001" ||
		!bytes.Equal(r.vb, []byte{1, 2, 3}) || r.si.Int64 != -300 || r.ti.Int64 != 200 {
		t.Errorf("row 1: %+v", r)
	}
	var u mssql.UniqueIdentifier
	if err := u.Scan(r.g); err != nil || u.String() != testGUID {
		t.Errorf("guid %x scans as %v (%v)", r.g, u, err)
	}

	r = got[1]
	if r.i.Valid || r.bi.Valid || r.b.Valid || r.s.Valid || r.smax.Valid || r.dt2.Valid || r.dt.Valid ||
		r.lsn.Valid || r.g != nil || r.vb != nil || r.si.Valid || r.ti.Valid {
		t.Errorf("row 2 should be all NULL: %+v", r)
	}

	r = got[2]
	if r.smax.String != bigString || !bytes.Equal(r.vb, bigBinary) || r.s.String != "" || !r.s.Valid || r.b.Bool ||
		r.lsn.String != "18446744073709551615" || r.ti.Int64 != 0 || r.ti.Valid != true {
		t.Errorf("row 3: smax %d chars, vb %d bytes, lsn %q", len(r.smax.String), len(r.vb), r.lsn.String)
	}
	if want := append(make([]byte, 15), 1); !bytes.Equal(r.g, want) {
		t.Errorf("row 3 guid %x", r.g)
	}
}

func TestParams(t *testing.T) {
	_, addr, h := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	when := time.Date(2023, 3, 4, 5, 6, 7, 890123400, time.FixedZone("", 90*60))
	text := "it's ]] ünïcødé 日本語 🎉"
	long := strings.Repeat("x€", 5000)
	blob := bytes.Repeat([]byte{9, 8, 7}, 5000)
	guid := mssql.UniqueIdentifier{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	args := []any{int64(-42), text, when, true, []byte{1, 2, 3}, nil, 3.5, int32(7), long, blob,
		guid, sql.NullString{}, false, []byte{}, ""}
	var n int
	if err := db.QueryRowContext(ctx, "select params", args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(args) {
		t.Fatalf("handler saw %d params, want %d", n, len(args))
	}
	h.mu.Lock()
	params, sqlText := h.params, h.lastSQL
	h.mu.Unlock()
	if sqlText != "select params" {
		t.Errorf("sql %q", sqlText)
	}
	want := []any{int64(-42), text, when, true, []byte{1, 2, 3}, nil, 3.5, int64(7), long, blob,
		[16]byte{4, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16}, nil, false, []byte{}, ""}
	for i, p := range params {
		if p.Name != fmt.Sprintf("@p%d", i+1) {
			t.Errorf("param %d named %q", i, p.Name)
		}
		switch w := want[i].(type) {
		case time.Time:
			got, ok := p.Value.(time.Time)
			if _, off := got.Zone(); !ok || !got.Equal(w) || off != 90*60 {
				t.Errorf("param %d = %v, want %v", i, p.Value, w)
			}
		case []byte:
			if got, ok := p.Value.([]byte); !ok || !bytes.Equal(got, w) {
				t.Errorf("param %d = %v, want %v", i, p.Value, w)
			}
		default:
			if p.Value != w {
				t.Errorf("param %d = %#v, want %#v", i, p.Value, w)
			}
		}
	}

	// Another procedure is called by name with named parameters.
	if _, err := db.ExecContext(ctx, "sp_custom", sql.Named("x", 5), sql.Named("y", "z")); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	params, sqlText = h.params, h.lastSQL
	h.mu.Unlock()
	if sqlText != "EXEC sp_custom" || len(params) != 2 || params[0].Name != "@x" || params[0].Value != int64(5) ||
		params[1].Name != "@y" || params[1].Value != "z" {
		t.Errorf("proc call decoded as %q %+v", sqlText, params)
	}
}

func TestErrorToken(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	for _, run := range []func() error{
		func() error { _, err := db.ExecContext(ctx, "raise error"); return err },
		func() error {
			rows, err := db.QueryContext(ctx, "raise error")
			if err == nil {
				rows.Close()
			}
			return err
		},
	} {
		err := run()
		var me mssql.Error
		if !errors.As(err, &me) || me.Number != 50001 || me.State != 2 || me.Class != 16 ||
			me.Message != "boom" || me.ServerName != "SIM" || me.ProcName != "p" || me.LineNo != 3 {
			t.Errorf("got %v (%#v)", err, me)
		}
	}
	// The connection is still usable.
	var n int
	if err := db.QueryRowContext(ctx, "select 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("select 1 after error: %d, %v", n, err)
	}
}

func TestRowsAffected(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	for sqlText, want := range map[string]int64{"update rows": 42, "update rows twice": 7} {
		res, err := db.ExecContext(ctx, sqlText)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := res.RowsAffected(); err != nil || n != want {
			t.Errorf("%s: rows affected %d, %v; want %d", sqlText, n, err, want)
		}
	}
}

func TestInfoMessagesStream(t *testing.T) {
	_, addr, h := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	msgs := &sqlexp.ReturnMessage{}
	rows, err := db.QueryContext(ctx, "backup database", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var notices []string
	for active := true; active; {
		switch m := msgs.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			notices = append(notices, m.Message.String())
			if len(notices) == 1 {
				// The first message arrived while the handler still waits.
				close(h.proceed)
			}
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgError:
			t.Fatalf("error message: %v", m.Error)
		case nil:
			t.Fatalf("no message: %v", ctx.Err())
		}
	}
	if len(notices) != 2 || notices[0] != "10 percent processed." || notices[1] != "100 percent processed." {
		t.Errorf("notices %q", notices)
	}
}

func TestAttention(t *testing.T) {
	for _, sqlText := range []string{"waitfor cancel", "waitfor cancel flushed"} {
		t.Run(sqlText, func(t *testing.T) {
			_, addr, h := startServer(t)
			db := openDB(t, addr, "sa", "pw", "")
			ctx := testContext(t)
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			qctx, cancel := context.WithCancel(ctx)
			go func() {
				<-h.started
				cancel()
			}()
			start := time.Now()
			rows, err := c.QueryContext(qctx, sqlText)
			if err == nil {
				rows.Close()
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cancel took %v", d)
			}
			var n int
			if err := c.QueryRowContext(ctx, "select 1").Scan(&n); err != nil || n != 1 {
				t.Fatalf("select 1 after cancel: %d, %v", n, err)
			}
		})
	}
}

func TestConcurrentConnections(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	db.SetMaxOpenConns(20)
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			c, err := db.Conn(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for range 10 {
				var n int
				if err := c.QueryRowContext(ctx, "select 1").Scan(&n); err != nil {
					errs <- err
					return
				}
				var s string
				if err := c.QueryRowContext(ctx, "select types").Scan(new(any), new(any), new(any), &s,
					new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any)); err != nil || s != "héllo ]'" {
					errs <- fmt.Errorf("select types: %q, %w", s, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestManyRows(t *testing.T) {
	_, addr, _ := startServer(t)
	for _, extra := range []string{"", "&packet+size=512", "&packet+size=32767"} {
		db := openDB(t, addr, "sa", "pw", extra)
		rows, err := db.QueryContext(testContext(t), "select many")
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var n int
			var s string
			if err := rows.Scan(&n, &s); err != nil {
				t.Fatal(err)
			}
			if n != i || s != fmt.Sprintf("row %d", i) {
				t.Fatalf("row %d: %d %q", i, n, s)
			}
			i++
		}
		if err := rows.Err(); err != nil || i != 10000 {
			t.Fatalf("%s: %d rows, %v", extra, i, err)
		}
		rows.Close()
	}
}

func TestAbort(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	rows, err := db.QueryContext(ctx, "abort connection")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if err == nil {
		t.Fatal("abort: no error")
	}
	t.Logf("abort error: %v", err)
	var n int
	if err := db.QueryRowContext(ctx, "select 1").Scan(&n); err != nil {
		t.Fatalf("select 1 on a new connection: %v", err)
	}
}

func TestTransaction(t *testing.T) {
	_, addr, _ := startServer(t)
	db := openDB(t, addr, "sa", "pw", "")
	ctx := testContext(t)
	for _, commit := range []bool{true, false} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tx.ExecContext(ctx, "update rows")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 42 {
			t.Errorf("rows affected %d", n)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatalf("commit=%v: %v", commit, err)
		}
	}
}

func TestFreeTDS(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tsql (freetds-bin) is not installed")
		}
		t.Skip("tsql not installed")
	}
	_, addr, h := startServer(t)
	host, port, _ := net.SplitHostPort(addr)
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, tsql, "-H", host, "-p", port, "-U", "sa", "-P", "pw")
	cmd.Env = append(os.Environ(), "TDSVER=7.4")
	cmd.Stdin = strings.NewReader("select name from sys.databases\ngo\nselect types\ngo\nraise error\ngo\nexit\n")
	out, err := cmd.CombinedOutput()
	if len(out) > 4096 {
		t.Logf("tsql output (start):\n%s", out[:4096])
	} else {
		t.Logf("tsql output:\n%s", out)
	}
	if err != nil {
		t.Fatalf("tsql: %v", err)
	}
	for _, name := range append(testDBNames, "34000000012300001", testGUID, "(3 rows affected)", "boom") {
		if !bytes.Contains(out, []byte(name)) {
			t.Errorf("output lacks %q", name)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastLogin.User != "sa" || h.lastLogin.Password != "pw" {
		t.Errorf("login decoded as %+v", h.lastLogin)
	}
}
