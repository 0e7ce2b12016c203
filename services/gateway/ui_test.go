package gateway_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
)

// get fetches path from the gateway with extra request headers.
func (e *env) get(t *testing.T, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestDashboardFiles: the dashboard's page and files are served from the
// binary with their types, the page's Content-Security-Policy allows its
// import map by hash and no other inline script, and a file that is not
// the dashboard's is a JSON 404, also when the path climbs out of it.
func TestDashboardFiles(t *testing.T) {
	e := newEnv(t, "")
	resp, page := e.get(t, "/", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, rest, _ := strings.Cut(page, `<script type="importmap">`)
	importMap, _, ok := strings.Cut(rest, "</script>")
	if !ok {
		t.Fatal("the page has no import map")
	}
	sum := sha256.Sum256([]byte(importMap))
	csp := resp.Header.Get("Content-Security-Policy")
	if want := "script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "';"; !strings.Contains(csp, want) {
		t.Errorf("Content-Security-Policy %q; want it to contain %q", csp, want)
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q allows inline code", csp)
	}
	for _, tc := range []struct{ path, ctype, has string }{
		{"/ui/app.js", "text/javascript", "render("},
		{"/ui/vendor/preact.mjs", "text/javascript", "export"},
		{"/ui/vendor/preact-hooks.mjs", "text/javascript", `from"preact"`},
		{"/ui/vendor/htm.mjs", "text/javascript", "export"},
		{"/ui/style.css", "text/css", "@media"},
		{"/ui/vendor/LICENSE-preact", "text/plain", "MIT"},
		{"/ui/vendor/LICENSE-htm", "text/plain", "Apache"},
	} {
		resp, body := e.get(t, tc.path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.has) {
			t.Errorf("GET %s: %d %s, has %q: %v; want 200 %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"),
				tc.has, strings.Contains(body, tc.has), tc.ctype)
		}
		again, _ := e.get(t, tc.path, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s again with its ETag: %d; want 304", tc.path, again.StatusCode)
		}
	}
	for _, path := range []string{"/ui/nothing.js", "/ui/", "/ui/%2e%2e/ui.go", "/ui/vendor/%2e%2e/%2e%2e/openapi.json"} {
		resp, body := e.get(t, path, nil)
		if resp.StatusCode != 404 || !strings.Contains(body, `"not_found"`) {
			t.Errorf("GET %s: %d %s; want a JSON 404", path, resp.StatusCode, body)
		}
	}
}

// TestETag: a GET of the API answers with an ETag, and the same GET with
// If-None-Match naming it is 304 Not Modified without a body; one naming
// other tags gets the answer.
func TestETag(t *testing.T) {
	e := newEnv(t, "")
	resp, body := e.get(t, "/api/v1/policies", nil)
	tag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || tag == "" {
		t.Fatalf("GET /api/v1/policies: %d, ETag %q", resp.StatusCode, tag)
	}
	resp, again := e.get(t, "/api/v1/policies", map[string]string{"If-None-Match": tag})
	if resp.StatusCode != http.StatusNotModified || again != "" {
		t.Errorf("GET with If-None-Match %s: %d %q; want 304 and no body", tag, resp.StatusCode, again)
	}
	resp, stale := e.get(t, "/api/v1/policies", map[string]string{"If-None-Match": `"stale", W/"older"`})
	if resp.StatusCode != 200 || stale != body || resp.Header.Get("ETag") != tag {
		t.Errorf("GET with stale ETags: %d, ETag %s; want 200, the same body and %s", resp.StatusCode, resp.Header.Get("ETag"), tag)
	}
	resp, _ = e.get(t, "/api/v1/nothing", map[string]string{"If-None-Match": "*"})
	if resp.StatusCode != 404 {
		t.Errorf("GET of no route with If-None-Match *: %d; want 404", resp.StatusCode)
	}
}
