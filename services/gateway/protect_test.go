package gateway_test

import (
	"encoding/json"
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
