package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/testproc"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestUpFirstAdmin: `coffer up` listening beyond loopback serves HTTPS
// from coffer's CA and creates a first admin on its first start, whose
// token, printed once, runs coffer user and coffer audit; a second start
// creates none.
func TestUpFirstAdmin(t *testing.T) {
	data := t.TempDir()
	start := func(out io.Writer) *running {
		t.Helper()
		key := strings.Repeat("07", 32)
		c, err := parseUpFlags([]string{"--data", data, "--services", "gateway", "--http", "0.0.0.0:0"}, func(k string) string {
			return map[string]string{"COFFER_MASTER_KEY": key}[k]
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		secureGateway(settings[gateway.Config](c, gateway.Name), data, out)
		r, err := startStack(t.Context(), c, io.Discard, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var out testproc.Buffer
	r := start(&out)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "coffer_") })
	token := regexp.MustCompile(`coffer_[0-9a-f]{64}`).FindString(out.String())
	if !strings.HasPrefix(r.apiURL, "https://") || token == "" {
		t.Fatalf("API at %s, printed %q: want HTTPS and the first admin's token", r.apiURL, out.String())
	}
	env := map[string]string{"COFFER_API": r.apiURL, "COFFER_API_TOKEN": token, "COFFER_API_CA": filepath.Join(data, "ca", "ca.pem")}
	cli := func(args ...string) (string, error) {
		var b bytes.Buffer
		err := runClient(t.Context(), args[0], args[1:], func(k string) string { return env[k] }, &b, &b)
		return b.String(), err
	}
	got, err := cli("user", "add", "olga", "--role", "operator")
	if err != nil || !strings.Contains(got, "user olga (operator) created") {
		t.Fatalf("user add: %v %s", err, got)
	}
	olga := regexp.MustCompile(`coffer_[0-9a-f]{64}`).FindString(got)
	olgaID := regexp.MustCompile(`API token ([0-9a-f]{12})`).FindStringSubmatch(got)
	if olga == "" || olgaID == nil {
		t.Fatalf("user add printed %q: want the token and its id", got)
	}
	if got, err := cli("user", "list"); err != nil || !strings.Contains(got, "admin") || !strings.Contains(got, "olga") {
		t.Errorf("user list: %v %s", err, got)
	}
	got, err = cli("user", "add", "vic", "--role", "viewer")
	vic := regexp.MustCompile(`coffer_[0-9a-f]{64}`).FindString(got)
	if err != nil || vic == "" {
		t.Fatalf("user add vic: %v %s", err, got)
	}
	env["COFFER_API_TOKEN"] = vic
	if got, err := cli("restore", "sql1/Sales", "--latest", "--as", "Sales_copy"); exitCode(err) != exitRefused || !strings.Contains(got+errString(err), "needs the operator role") {
		t.Errorf("restore as a viewer: exit code %d, %v %s; want %d, refused", exitCode(err), err, got, exitRefused)
	}
	env["COFFER_API_TOKEN"] = olga
	if got, err := cli("user", "list"); err == nil || !strings.Contains(err.Error(), "needs the admin role") || exitCode(err) != exitRefused {
		t.Errorf("user list as an operator: exit code %d, %v %s; want %d, refused", exitCode(err), err, got, exitRefused)
	}
	if got, err := cli("user", "add", "mallory", "--role", "admin"); err == nil || !strings.Contains(err.Error(), "needs the admin role") {
		t.Errorf("user add as an operator: %v %s; want refused", err, got)
	}
	env["COFFER_API_TOKEN"] = token
	got, err = cli("audit")
	if err != nil || !regexp.MustCompile(`olga +127\.0\.0\.1 +POST /api/v1/users +403 refused`).MatchString(got) ||
		!regexp.MustCompile(`admin +127\.0\.0\.1 +POST /api/v1/users +201 succeeded`).MatchString(got) {
		t.Errorf("audit: %v %s", err, got)
	}
	if got, err := cli("user", "revoke", "olga", olgaID[1]); err != nil || !strings.Contains(got, "revoked") {
		t.Errorf("user revoke: %v %s", err, got)
	}
	env["COFFER_API_TOKEN"] = olga
	if _, err := cli("jobs"); err == nil || !strings.Contains(err.Error(), "wrong API token") || exitCode(err) != exitRefused {
		t.Errorf("jobs with a revoked token: exit code %d, %v; want %d, refused", exitCode(err), err, exitRefused)
	}
	env["COFFER_API_TOKEN"] = token
	if got, err := cli("user", "delete", "olga"); err != nil || !strings.Contains(got, "deleted") {
		t.Errorf("user delete: %v %s", err, got)
	}
	// without the CA, the client does not trust the API
	delete(env, "COFFER_API_CA")
	if _, err := cli("jobs"); err == nil || !strings.Contains(err.Error(), "certificate") || exitCode(err) != exitUnreachable {
		t.Errorf("jobs without the CA: exit code %d, %v; want %d, a certificate error", exitCode(err), err, exitUnreachable)
	}
	r.stop()

	var again testproc.Buffer
	r = start(&again)
	t.Cleanup(func() { r.stop() })
	env["COFFER_API"], env["COFFER_API_CA"] = r.apiURL, filepath.Join(data, "ca", "ca.pem")
	if got, err := cli("jobs"); err != nil {
		t.Fatalf("jobs after a restart with the first token: %v %s", err, got)
	}
	if strings.Contains(again.String(), "coffer_") {
		t.Errorf("a second start printed %q; want no new admin", again.String())
	}
}
