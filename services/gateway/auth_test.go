package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	"github.com/cofferhq/coffer/services/gateway"
)

// users adds a user of each role through the API, with the admin token,
// and returns each one's new API token by role.
func (e *env) users(t *testing.T, adminToken string) map[gateway.Role]string {
	t.Helper()
	out := map[gateway.Role]string{}
	for _, role := range []gateway.Role{gateway.RoleViewer, gateway.RoleOperator, gateway.RoleAdmin} {
		status, body := e.do(t, "POST", "/api/v1/users", fmt.Sprintf(`{"name":"%s1","role":"%s","token":true}`, role, role), adminToken)
		var nt gateway.NewToken
		if err := json.Unmarshal([]byte(body), &nt); status != 201 || err != nil || !strings.HasPrefix(nt.Token, "coffer_") {
			t.Fatalf("add %s: %d %s", role, status, body)
		}
		out[role] = nt.Token
	}
	return out
}

// TestRoles: over every route and every role, a caller is refused (403)
// exactly when the route needs a higher role, and one not signed in is
// refused (401) everything but the public routes.
func TestRoles(t *testing.T) {
	e := newEnv(t, "adm1n")
	tokens := e.users(t, "adm1n")
	tokens[gateway.RolePublic] = ""
	const public, viewer, operator, admin = gateway.RolePublic, gateway.RoleViewer, gateway.RoleOperator, gateway.RoleAdmin
	// who may do what, stated here apart from the gateway's route table
	least := map[string]gateway.Role{
		"GET /healthz": public, "GET /": public, "GET /ui/{file...}": public, "GET /api/v1/openapi.json": public,
		"POST /api/v1/login": public, "POST /api/v1/logout": public,
		"GET /metrics": viewer, "GET /api/v1/whoami": viewer,
		"GET /api/v1/instances": viewer, "GET /api/v1/databases": viewer, "GET /api/v1/recovery-points": viewer,
		"GET /api/v1/recovery-ranges": viewer, "GET /api/v1/jobs": viewer, "GET /api/v1/jobs/{id}": viewer,
		"POST /api/v1/jobs/{id}/cancel": operator,
		"GET /api/v1/policies":          viewer, "GET /api/v1/policies/{name}": viewer, "GET /api/v1/vaults": viewer,
		"GET /api/v1/alerts": viewer, "GET /api/v1/alerts/rules": viewer,
		"POST /api/v1/instances/{name}/discover": operator, "POST /api/v1/instances/{name}/check-url": operator,
		"POST /api/v1/protect": operator, "POST /api/v1/backups": operator, "POST /api/v1/restores": operator,
		"POST /api/v1/verifications": operator, "POST /api/v1/recovery-points/undelete": operator,
		"POST /api/v1/instances": admin, "PUT /api/v1/instances/{name}/autoprotect": admin, "POST /api/v1/unprotect": admin,
		"POST /api/v1/recovery-points/delete": admin, "DELETE /api/v1/recovery-points/{id}": admin,
		"POST /api/v1/catalog/rebuild": admin, "PUT /api/v1/policies/{name}": admin, "DELETE /api/v1/policies/{name}": admin, "POST /api/v1/vaults": admin,
		"GET /api/v1/users": admin, "POST /api/v1/users": admin, "DELETE /api/v1/users/{name}": admin,
		"POST /api/v1/users/{name}/tokens": admin, "DELETE /api/v1/users/{name}/tokens/{id}": admin, "GET /api/v1/audit": admin,
	}
	if len(least) != len(gateway.Routes()) {
		t.Errorf("%d routes stated here, the gateway serves %d", len(least), len(gateway.Routes()))
	}
	for _, rt := range gateway.Routes() {
		need, ok := least[rt.Method+" "+rt.Pattern]
		if !ok {
			t.Errorf("%s %s: say here who may call it", rt.Method, rt.Pattern)
			continue
		}
		if rt.Role != need {
			t.Errorf("%s %s is served to %s and above; want %s", rt.Method, rt.Pattern, rt.Role, need)
		}
		if rt.Pattern == "/api/v1/login" {
			continue // answers 401 to a wrong password, whoever asks
		}
		path := strings.NewReplacer("{name}", "nobody", "{id}", "nothing").Replace(rt.Pattern)
		for _, role := range []gateway.Role{public, viewer, operator, admin} {
			status, body := e.do(t, rt.Method, path, "{}", tokens[role])
			var want int
			switch {
			case need == public:
			case role == public:
				want = 401
			case role < need:
				want = 403
			}
			if want != 0 && status != want || want == 0 && (status == 401 || status == 403) {
				t.Errorf("%s %s as %s: %d %s; want %s", rt.Method, rt.Pattern, role, status, body,
					map[int]string{0: "allowed", 401: "401", 403: "403"}[want])
			}
			if want != 0 && !strings.Contains(body, `"code": "`+map[int]string{401: "unauthenticated", 403: "forbidden"}[want]+`"`) {
				t.Errorf("%s %s as %s: %s; want the error's code", rt.Method, rt.Pattern, role, body)
			}
		}
	}
}

// TestRestoreRoles: a viewer cannot start a restore, an operator cannot
// overwrite, an admin may (the request then goes on to its checks).
func TestRestoreRoles(t *testing.T) {
	e := newEnv(t, "adm1n")
	tokens := e.users(t, "adm1n")
	const restore = `{"instance":"sql1","database":"Sales","latest":true,"target_database":"Sales_copy"}`
	const overwrite = `{"instance":"sql1","database":"Sales","latest":true,"target_database":"Sales","overwrite":true}`
	if status, body := e.do(t, "POST", "/api/v1/restores", restore, tokens[gateway.RoleViewer]); status != 403 {
		t.Errorf("a viewer's restore: %d %s; want 403", status, body)
	}
	if status, body := e.do(t, "POST", "/api/v1/restores", overwrite, tokens[gateway.RoleOperator]); status != 403 || !strings.Contains(body, "overwrite restore needs the admin role") {
		t.Errorf("an operator's overwrite: %d %s; want 403", status, body)
	}
	// nothing to restore: past the role checks, refused by the planner
	if status, body := e.do(t, "POST", "/api/v1/restores", restore, tokens[gateway.RoleOperator]); status != 422 {
		t.Errorf("an operator's restore to a new name: %d %s; want 422 (no backups)", status, body)
	}
	if status, body := e.do(t, "POST", "/api/v1/restores", overwrite, tokens[gateway.RoleAdmin]); status != 422 {
		t.Errorf("an admin's overwrite: %d %s; want 422 (no backups)", status, body)
	}
}

// TestUsers: tokens, passwords, deletion, the last admin, and the API
// token and open loopback of before users.
func TestUsers(t *testing.T) {
	e := newEnv(t, "")
	// open: no user, no token, loopback
	if status, body := e.do(t, "GET", "/api/v1/whoami", "", ""); status != 200 || !strings.Contains(body, `"anonymous"`) {
		t.Fatalf("open whoami: %d %s", status, body)
	}
	for _, c := range []struct{ body, want string }{
		{`{"name":"a b","role":"admin","token":true}`, "use letters"},
		{`{"name":"x","role":"root","token":true}`, "want viewer, operator or admin"},
		{`{"name":"x","role":"admin"}`, "a password, a token or both"},
		{`{"name":"x","role":"admin","password":"short"}`, "shorter than 12"},
		{`{"name":"api-token","role":"admin","token":true}`, "reserved"},
	} {
		if status, body := e.do(t, "POST", "/api/v1/users", c.body, ""); status != 400 || !strings.Contains(body, c.want) {
			t.Errorf("add %s: %d %s; want 400 %q", c.body, status, body, c.want)
		}
	}
	status, body := e.do(t, "POST", "/api/v1/users", `{"name":"alice","role":"admin","password":"correct horse battery","token":true}`, "")
	var alice gateway.NewToken
	if json.Unmarshal([]byte(body), &alice); status != 201 || alice.Token == "" {
		t.Fatalf("add alice: %d %s", status, body)
	}
	// a user exists: no longer open
	if status, _ := e.do(t, "GET", "/api/v1/jobs", "", ""); status != 401 {
		t.Errorf("no credentials once a user exists: %d, want 401", status)
	}
	if status, _ := e.do(t, "GET", "/api/v1/jobs", "", "coffer_"+strings.Repeat("0", 64)); status != 401 {
		t.Errorf("an unknown token: %d, want 401", status)
	}
	if status, body := e.do(t, "GET", "/api/v1/whoami", "", alice.Token); status != 200 || !strings.Contains(body, `"alice"`) || !strings.Contains(body, `"admin"`) {
		t.Errorf("whoami with alice's token: %d %s", status, body)
	}
	if status, body := e.do(t, "POST", "/api/v1/users", `{"name":"alice","role":"viewer","token":true}`, alice.Token); status != 409 {
		t.Errorf("alice again: %d %s; want 409", status, body)
	}
	// the bucket keeps neither the token nor the password
	kv, err := e.bus.JetStream().KeyValue(t.Context(), "users")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range keys.Keys() {
		v, err := kv.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if bytes.Contains(v.Value(), []byte(alice.Token)) || bytes.Contains(v.Value(), []byte("correct horse")) || bytes.Contains([]byte(k), []byte(alice.Token)) {
			t.Errorf("key %s holds the token or the password in the clear", k)
		}
	}
	if n != 3 {
		t.Errorf("%d keys in the users bucket, want 3 (alice, her token, the marker that users exist)", n)
	}
	if status, body := e.do(t, "POST", "/api/v1/users", `{"name":"bob","role":"viewer","token":true}`, alice.Token); status != 201 {
		t.Fatalf("add bob: %d %s", status, body)
	} else {
		var bob gateway.NewToken
		json.Unmarshal([]byte(body), &bob)
		status, body = e.do(t, "POST", "/api/v1/users/bob/tokens", "", alice.Token)
		var bob2 gateway.NewToken
		if json.Unmarshal([]byte(body), &bob2); status != 201 || bob2.Token == "" || bob2.Token == bob.Token {
			t.Fatalf("bob's second token: %d %s", status, body)
		}
		status, body = e.do(t, "GET", "/api/v1/users", "", alice.Token)
		if status != 200 || strings.Contains(body, bob.Token) || strings.Contains(body, bob2.Token) || !strings.Contains(body, bob2.ID) {
			t.Errorf("user list: %d %s; want token ids, never tokens", status, body)
		}
		if status, body := e.do(t, "DELETE", "/api/v1/users/bob/tokens/"+bob.ID, "", alice.Token); status != 200 {
			t.Errorf("revoke bob's first token: %d %s", status, body)
		}
		if status, _ := e.do(t, "GET", "/api/v1/jobs", "", bob.Token); status != 401 {
			t.Errorf("a revoked token: %d, want 401", status)
		}
		if status, _ := e.do(t, "GET", "/api/v1/jobs", "", bob2.Token); status != 200 {
			t.Errorf("bob's other token after the revocation: %d, want 200", status)
		}
		if status, _ := e.do(t, "DELETE", "/api/v1/users/bob/tokens/"+bob.ID, "", alice.Token); status != 404 {
			t.Errorf("revoke it again: %d, want 404", status)
		}
		if status, body := e.do(t, "POST", "/api/v1/users/bob/tokens", "", alice.Token); status != 201 {
			t.Errorf("bob's third token: %d %s", status, body)
		}
		if status, body := e.do(t, "DELETE", "/api/v1/users/bob", "", alice.Token); status != 200 || !strings.Contains(body, `"tokens_deleted": 2`) {
			t.Errorf("delete bob: %d %s", status, body)
		}
		for _, tok := range []string{bob.Token, bob2.Token} {
			if status, _ := e.do(t, "GET", "/api/v1/jobs", "", tok); status != 401 {
				t.Errorf("a deleted user's token: %d, want 401", status)
			}
		}
	}
	if status, body := e.do(t, "DELETE", "/api/v1/users/alice", "", alice.Token); status != 409 || !strings.Contains(body, "last admin") {
		t.Errorf("delete the last admin: %d %s; want 409", status, body)
	}
}

// TestSession: a password signs in to a session cookie (HttpOnly,
// SameSite=Strict); a change made with it needs the CSRF header.
func TestSession(t *testing.T) {
	e := newEnv(t, "adm1n")
	if status, body := e.do(t, "POST", "/api/v1/users", `{"name":"olga","role":"operator","password":"correct horse battery"}`, "adm1n"); status != 201 {
		t.Fatalf("add olga: %d %s", status, body)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	send := func(method, path, body string, header map[string]string) (int, string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp
	}
	for _, login := range []string{`{"name":"olga","password":"wrong password here"}`, `{"name":"nobody","password":"correct horse battery"}`} {
		if status, body, _ := send("POST", "/api/v1/login", login, nil); status != 401 || !strings.Contains(body, "wrong user name or password") {
			t.Fatalf("sign in with %s: %d %s; want 401", login, status, body)
		}
	}
	status, body, resp := send("POST", "/api/v1/login", `{"name":"olga","password":"correct horse battery"}`, nil)
	var who gateway.Whoami
	if json.Unmarshal([]byte(body), &who); status != 200 || who.CSRF == "" || who.Role != "operator" {
		t.Fatalf("sign in: %d %s", status, body)
	}
	cookie := resp.Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP", cookie)
	}
	if status, body, _ := send("GET", "/api/v1/whoami", "", nil); status != 200 || !strings.Contains(body, `"olga"`) {
		t.Errorf("whoami with the cookie: %d %s", status, body)
	}
	const backup = `{"instance":"sql1","database":"nope","type":"full"}`
	if status, body, _ := send("POST", "/api/v1/backups", backup, nil); status != 403 || !strings.Contains(body, "X-Coffer-CSRF") {
		t.Errorf("a change without the CSRF header: %d %s; want 403", status, body)
	}
	if status, body, _ := send("POST", "/api/v1/backups", backup, map[string]string{"X-Coffer-CSRF": who.CSRF + "x"}); status != 403 {
		t.Errorf("a change with a wrong CSRF header: %d %s; want 403", status, body)
	}
	if status, body, _ := send("POST", "/api/v1/backups", backup, map[string]string{"X-Coffer-CSRF": who.CSRF}); status != 404 {
		t.Errorf("a change with the CSRF header: %d %s; want 404 (no such database)", status, body)
	}
	if status, body, _ := send("PUT", "/api/v1/policies/p", "{}", map[string]string{"X-Coffer-CSRF": who.CSRF}); status != 403 {
		t.Errorf("an operator's session changing a policy: %d %s; want 403", status, body)
	}
	// a forged cookie
	forged := strings.Replace(cookie.Value, cookie.Value[:4], "YWRt", 1)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/api/v1/whoami", nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: forged})
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 401 {
		t.Errorf("a forged session: %v %v; want 401", r.StatusCode, err)
	}
}

type auditEntry = gateway.AuditEntry

// TestAudit: every write is in the audit log with who, from where and
// its outcome; reads are not; only an admin reads it.
func TestAudit(t *testing.T) {
	e := newEnv(t, "adm1n")
	tokens := e.users(t, "adm1n")
	e.do(t, "POST", "/api/v1/backups", `{"instance":"sql1","database":"nope","type":"full"}`, tokens[gateway.RoleOperator])
	e.do(t, "POST", "/api/v1/restores", `{"instance":"sql1","database":"Sales","latest":true,"target_database":"Sales_copy"}`, tokens[gateway.RoleViewer])
	e.do(t, "POST", "/api/v1/catalog/rebuild", `{}`, tokens[gateway.RoleAdmin])
	e.do(t, "GET", "/api/v1/jobs", "", tokens[gateway.RoleAdmin])
	e.do(t, "POST", "/api/v1/backups", `{}`, "wrong")
	if status, _ := e.do(t, "GET", "/api/v1/audit", "", tokens[gateway.RoleOperator]); status != 403 {
		t.Errorf("an operator reading the audit log: %d, want 403", status)
	}
	status, body := e.do(t, "GET", "/api/v1/audit", "", tokens[gateway.RoleAdmin])
	var got []auditEntry
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("audit: %d %s", status, body)
	}
	type row struct{ user, method, path, outcome string }
	var rows []row
	for _, a := range got {
		if a.Remote != "127.0.0.1" || a.Time.IsZero() || a.Status == 0 {
			t.Errorf("entry %+v: want the caller's address, a time and a status", a)
		}
		rows = append(rows, row{a.User, a.Method, a.Path, a.Outcome})
	}
	want := []row{ // newest first
		{"", "POST", "/api/v1/backups", "refused"},
		{"admin1", "POST", "/api/v1/catalog/rebuild", "succeeded"},
		{"viewer1", "POST", "/api/v1/restores", "refused"},
		{"operator1", "POST", "/api/v1/backups", "rejected"},
		{"api-token", "POST", "/api/v1/users", "succeeded"},
		{"api-token", "POST", "/api/v1/users", "succeeded"},
		{"api-token", "POST", "/api/v1/users", "succeeded"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("audit log:\n%v\nwant\n%v", rows, want)
	}
	if !strings.HasPrefix(got[1].Detail, "job ") {
		t.Errorf("the rebuild's entry: detail %q, want its job", got[1].Detail)
	}
	if status, body := e.do(t, "GET", "/api/v1/audit?user=viewer1&limit=5", "", tokens[gateway.RoleAdmin]); status != 200 || strings.Count(body, `"id"`) != 1 {
		t.Errorf("audit of viewer1: %d %s; want one entry", status, body)
	}
	if status, _ := e.do(t, "GET", "/api/v1/audit?limit=0", "", tokens[gateway.RoleAdmin]); status != 400 {
		t.Errorf("limit=0: %d, want 400", status)
	}
}

// TestTLS: the gateway serves HTTPS with a certificate from coffer's CA;
// plain HTTP beyond loopback is refused; and beyond loopback, with no
// user and no token, it serves no one.
func TestTLS(t *testing.T) {
	n := topologytest.Start(t, bus.Config{})
	key := bytes.Repeat([]byte{7}, 32)
	plain, err := gateway.New(n.Bus, n.Catalog, gateway.Config{MasterKey: key, Addr: "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Listen(); err == nil || !strings.Contains(err.Error(), "plain HTTP is served on loopback only") {
		t.Errorf("plain HTTP on 0.0.0.0: listen %v; want refused", err)
	}
	behindProxy, err := gateway.New(n.Bus, n.Catalog, gateway.Config{MasterKey: key, Addr: "0.0.0.0:0", PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := behindProxy.Listen(); err != nil {
		t.Errorf("plain HTTP on 0.0.0.0 with PlainHTTP: %v; want it served", err)
	}
	caDir := filepath.Join(t.TempDir(), "ca")
	gw, err := gateway.New(n.Bus, n.Catalog, gateway.Config{MasterKey: key, Addr: "0.0.0.0:0", TLSCADir: caDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ca, err := tlsca.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(gw.Addr(), "]:")
	if port == "" {
		_, port, _ = strings.Cut(gw.Addr(), ":")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://localhost:" + port + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("HTTPS healthz: %d", resp.StatusCode)
	}
	// no user, no token, beyond loopback: refused, saying why
	resp, err = c.Get("https://127.0.0.1:" + port + "/api/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "serves no one until a user exists") {
		t.Errorf("beyond loopback without users: %d %s; want 401", resp.StatusCode, b)
	}
	// plain HTTP to the HTTPS port is not served
	resp, err = http.Get("http://127.0.0.1:" + port + "/api/v1/jobs")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || strings.Contains(string(b), "[") {
			t.Errorf("plain HTTP to the HTTPS port: %d %s; want 400", resp.StatusCode, b)
		}
	}
}
