package gateway_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestProtectMany: one request protects any number of databases, named
// or by pattern; a name that names nothing protects nothing.
func TestProtectMany(t *testing.T) {
	e := newEnv(t, "")
	for _, db := range []string{"sql1/Sales", "sql1/HR", "sql1/Ops", "sql2/Sales", "sql2/Stock"} {
		inst, name, _ := strings.Cut(db, "/")
		if _, err := e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key(inst, name), &cofferv1.DatabaseInfo{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ body, want string }{
		{`{"databases":["sql1/*","sql9/*"]}`, `pattern \"sql9/*\" matches no database`},
		{`{"databases":["sql1/Sales","sql2/Nope"]}`, `no database \"Nope\"`},
		{`{"databases":["sql1/[a"]}`, "syntax error in pattern"},
		{`{"databases":["sql1"]}`, "INSTANCE/DATABASE"},
		{`{"databases":["sql1/*"],"instance":"sql1","database":"HR"}`, "not both"},
	} {
		if status, body := e.do(t, "POST", "/api/v1/protect", c.body, ""); status < 400 || !strings.Contains(body, c.want) {
			t.Errorf("protect %s: %d %s; want an error containing %q", c.body, status, body, c.want)
		}
	}
	status, body := e.do(t, "POST", "/api/v1/protect", `{"databases":["SQL1/*","*/sales","sql2/Stock"],"policy":"gold"}`, "")
	var out gateway.DatabaseRequest
	if err := json.Unmarshal([]byte(body), &out); status != 202 || err != nil {
		t.Fatalf("protect: %d %s", status, body)
	}
	var got []string
	for _, p := range out.Protected {
		got = append(got, p.Instance+"/"+p.Database+":"+p.Policy)
	}
	want := []string{"sql1/HR:gold", "sql1/Ops:gold", "sql1/Sales:gold", "sql2/Sales:gold", "sql2/Stock:gold"}
	if !slices.Equal(got, want) {
		t.Errorf("protected %v, want %v", got, want)
	}
	// one protection request each, and none from the refused requests
	var asked []string
	timeout := time.After(10 * time.Second)
	for len(asked) < len(want) {
		select {
		case m := <-e.got:
			var ev cofferv1.ProtectionRequested
			if m.Subject == cofferv1.SubjectProtectionRequested && m.Decode(&ev) == nil {
				asked = append(asked, ev.GetDatabase().GetInstance()+"/"+ev.GetDatabase().GetDatabase()+":"+ev.GetPolicy())
			}
		case <-timeout:
			t.Fatalf("protection requested for %v, want %v", asked, want)
		}
	}
	slices.Sort(asked)
	if !slices.Equal(asked, want) {
		t.Errorf("protection requested for %v, want %v", asked, want)
	}
}

// TestProtectNamedLikePatterns: a database whose name a pattern would
// read otherwise ("[", "[x]", "a*b", all names SQL Server allows) is
// protected by that name alone, not what the pattern would match.
func TestProtectNamedLikePatterns(t *testing.T) {
	e := newEnv(t, "")
	for _, name := range []string{"[", "[x]", "x", "a*b", "aXb"} {
		if _, err := e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key("sql1", name), &cofferv1.DatabaseInfo{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	status, body := e.do(t, "POST", "/api/v1/protect", `{"databases":["sql1/[","sql1/[x]","sql1/a*b"]}`, "")
	var out gateway.DatabaseRequest
	if err := json.Unmarshal([]byte(body), &out); status != 202 || err != nil {
		t.Fatalf("protect: %d %s", status, body)
	}
	var got []string
	for _, p := range out.Protected {
		got = append(got, p.Database)
	}
	if want := []string{"[", "[x]", "a*b"}; !slices.Equal(got, want) {
		t.Errorf("protected %q, want %q", got, want)
	}
	if status, body := e.do(t, "POST", "/api/v1/protect", `{"databases":["sql1/[y"]}`, ""); status < 400 || !strings.Contains(body, "syntax error in pattern") {
		t.Errorf("protect sql1/[y: %d %s; want a pattern's syntax error", status, body)
	}
}

// TestUnprotectAndBackupMany: one request unprotects, or backs up, any
// number of databases named or by pattern, a job each for the backups; a
// name that names nothing does nothing for any, and a request gives one
// database or many, not both.
func TestUnprotectAndBackupMany(t *testing.T) {
	e := newEnv(t, "")
	for _, db := range []string{"sql1/Sales", "sql1/HR", "sql2/Sales", "sql2/Stock"} {
		inst, name, _ := strings.Cut(db, "/")
		if _, err := e.cat.Bucket(cofferv1.BucketInventory).Put(t.Context(), catalog.Key(inst, name), &cofferv1.DatabaseInfo{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ path, body, want string }{
		{"/api/v1/unprotect", `{"databases":["sql1/*","sql9/*"]}`, `nothing unprotected: pattern \"sql9/*\" matches no database`},
		{"/api/v1/unprotect", `{"databases":["sql1/HR"],"instance":"sql1","database":"HR"}`, "not both"},
		{"/api/v1/backups", `{"databases":["sql1/Sales","sql2/Nope"],"type":"full"}`, `nothing backed up: no database \"Nope\"`},
		{"/api/v1/backups", `{"databases":["sql1"],"type":"log"}`, "INSTANCE/DATABASE"},
		{"/api/v1/backups", `{"databases":["sql1/*"],"type":"weekly"}`, "unknown backup type"},
		{"/api/v1/backups", `{"databases":["sql1/*"],"instance":"sql1","database":"HR","type":"log"}`, "not both"},
	} {
		if status, body := e.do(t, "POST", c.path, c.body, ""); status < 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s; want an error containing %q", c.path, c.body, status, body, c.want)
		}
	}

	status, body := e.do(t, "POST", "/api/v1/backups", `{"databases":["*/sales","sql1/HR"],"type":"differential"}`, "")
	var acc gateway.Accepted
	if err := json.Unmarshal([]byte(body), &acc); status != 202 || err != nil {
		t.Fatalf("backup many: %d %s", status, body)
	}
	if want := []string{"sql1/Sales", "sql2/Sales", "sql1/HR"}; !slices.Equal(acc.Databases, want) || len(acc.Jobs) != 3 || acc.JobID != acc.Jobs[0] {
		t.Fatalf("backup many answered %+v; want a job each for %v", acc, want)
	}
	status, body = e.do(t, "POST", "/api/v1/unprotect", `{"databases":["SQL2/*"]}`, "")
	var un gateway.DatabaseRequest
	if err := json.Unmarshal([]byte(body), &un); status != 202 || err != nil {
		t.Fatalf("unprotect many: %d %s", status, body)
	}
	var got []string
	for _, d := range un.Unprotected {
		got = append(got, d.Instance+"/"+d.Database)
	}
	if want := []string{"sql2/Sales", "sql2/Stock"}; !slices.Equal(got, want) {
		t.Errorf("unprotected %v, want %v", got, want)
	}

	// the events, in order, and none from the refused requests
	var events []string
	for len(events) < 5 {
		m := e.next(t, fmt.Sprintf("5 events, got %v", events))
		switch m.Subject {
		case cofferv1.SubjectBackupOnDemand:
			var ev cofferv1.BackupOnDemandRequested
			if err := m.Decode(&ev); err != nil {
				t.Fatal(err)
			}
			events = append(events, fmt.Sprintf("backup %s/%s %s %s", ev.GetDatabase().GetInstance(), ev.GetDatabase().GetDatabase(),
				ev.GetType(), ev.GetMeta().GetJobId()))
		case cofferv1.SubjectUnprotectRequested:
			var ev cofferv1.UnprotectRequested
			if err := m.Decode(&ev); err != nil {
				t.Fatal(err)
			}
			events = append(events, fmt.Sprintf("unprotect %s/%s", ev.GetDatabase().GetInstance(), ev.GetDatabase().GetDatabase()))
		default:
			t.Errorf("unexpected event on %s", m.Subject)
		}
	}
	want := []string{
		"backup sql1/Sales BACKUP_TYPE_DIFFERENTIAL " + acc.Jobs[0], "backup sql2/Sales BACKUP_TYPE_DIFFERENTIAL " + acc.Jobs[1],
		"backup sql1/HR BACKUP_TYPE_DIFFERENTIAL " + acc.Jobs[2], "unprotect sql2/Sales", "unprotect sql2/Stock",
	}
	if !slices.Equal(events, want) {
		t.Errorf("events\n%q\nwant\n%q", events, want)
	}
}
