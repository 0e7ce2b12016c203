package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestNoSecretsLeak runs coffer through a day's work and its failures,
// with the vault in MinIO, and looks for every secret it was given in
// everything it said: each record every service logged at debug level,
// every API answer (status, headers, body), the CLI's output and errors,
// every message on NATS, the spans it traced, and the files it wrote in
// its data directory and a restore as files. The secrets are the master
// key (and mistyped or wrong ones), the vault keys and the subkeys
// derived from them, the SQL passwords of the connection strings (the
// right one, a wrong one, ones in strings that do not parse or do not
// connect) and the S3 secret key; none may appear in any common encoding
// (secretForms).
func TestNoSecretsLeak(t *testing.T) {
	start := time.Now()
	var logs, answers, transcript, messages capture
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// a password with characters every URL encoding changes
	const sa, token = "Leak Check/s3cr3t@p4ss!", "Api-T0ken-5ecret-8842"
	h := startHarness(t, harnessOptions{s3: true, logger: logger, saPassword: sa, token: token, pages: 64})
	h.transcript = &transcript
	h.api = recordAnswers(t, h.api, &answers)
	sub, err := h.run.nc.Subscribe(">", func(m *nats.Msg) {
		messages.add([]byte(m.Subject), []byte(fmt.Sprint(m.Header)), m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	master, err := vault.ParseMasterKey(h.key)
	if err != nil {
		t.Fatal(err)
	}
	// a random vault key, besides the primary one derived from the
	// master key, seals what follows
	if _, err := h.run.vault.AddKey(t.Context(), master); err != nil {
		t.Fatal(err)
	}

	// a day's work: register (the connection string holds the password),
	// protect, back up, restore to a new name and as files, verify
	if err := h.sim.CreateDatabase("Loose", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	h.protected("Ledger")
	full := cofferJSON[gateway.Job](h, "backup", "sql1/Ledger", "--type", "full", "--wait")
	if _, err := h.sim.Commit("Ledger", 4); err != nil {
		t.Fatal(err)
	}
	h.mustCoffer("backup", "sql1/Ledger", "--type", "log", "--wait")
	h.mustCoffer("restore", "sql1/Ledger", "--point", full.RecoveryPoint, "--as", "Ledger copy", "--wait")
	files := t.TempDir()
	h.mustCoffer("restore", "sql1/Ledger", "--latest", "--to-dir", files, "--wait")
	h.mustCoffer("verify", "sql1/Ledger", "--wait")
	for _, args := range [][]string{{"instance", "list"}, {"instance", "check", "sql1"}, {"db", "list"}, {"rp", "list", "sql1/Ledger"},
		{"rp", "ranges", "sql1/Ledger"}, {"jobs"}, {"jobs", "show", full.ID}, {"policy", "list"}, {"policy", "show", "default"}} {
		h.mustCoffer(args...)
		h.mustCoffer(append(args, "--json")...)
	}

	// the vault check, as an operator runs it: with the right keys, then
	// with another master key, one mistyped and a wrong S3 secret key
	other := hex.EncodeToString(vault.GenerateMasterKey())
	mistyped := h.key[:len(h.key)-1] + "g"
	wrongS3 := "Wr0ngS3cretKey-" + h.s3.SecretKey[:8]
	for _, c := range []struct {
		key, s3 string
		ok      bool
	}{{h.key, h.s3.SecretKey, true}, {other, h.s3.SecretKey, false}, {mistyped, h.s3.SecretKey, false}, {h.key, wrongS3, false}} {
		var out bytes.Buffer
		env := map[string]string{"COFFER_MASTER_KEY": c.key, "COFFER_S3_SECRET_KEY": c.s3}
		err := runVault(t.Context(), []string{"check", "--full", "--data", h.data, "--s3-endpoint", h.s3.Endpoint, "--s3-bucket", "vault",
			"--s3-access-key", h.s3.AccessKey, "--s3-ca-file", h.s3.CAFile, "--store-retry-for", "1s"}, func(k string) string { return env[k] }, &out, &out)
		transcript.Write(out.Bytes())
		if err != nil {
			transcript.add([]byte(err.Error()))
		}
		if (err == nil) != c.ok {
			t.Errorf("vault check: %v, want success %v\n%s", err, c.ok, out.String())
		}
	}

	// a named vault in the same store, its secret key given in a file,
	// that a database is backed up into; and one the store refuses for a
	// wrong secret key, whose failure ends in logs and jobs
	secretFile, wrongFile := filepath.Join(t.TempDir(), "s3"), filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(secretFile, []byte(h.s3.SecretKey), 0o600)
	os.WriteFile(wrongFile, []byte(wrongS3), 0o600)
	named := []string{"--s3-endpoint", h.s3.Endpoint, "--s3-access-key", h.s3.AccessKey, "--s3-ca-file", h.s3.CAFile}
	h.mustCoffer(append([]string{"vault", "create", "offsite", "--s3-bucket", "offsite", "--s3-secret-key-file", secretFile}, named...)...)
	if out, err := h.coffer(append([]string{"vault", "create", "refused", "--s3-bucket", "refused", "--s3-secret-key-file", wrongFile}, named...)...); err == nil {
		t.Errorf("a vault with a wrong S3 secret key was created:\n%s", out)
	}
	if err := h.sim.CreateDatabase("Remote", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	h.register("Remote")
	h.mustCoffer("protect", "sql1/Remote", "--vault", "offsite")
	h.mustCoffer("backup", "sql1/Remote", "--type", "full", "--wait")
	h.mustCoffer("vault", "list")
	h.mustCoffer("vault", "list", "--json")

	// failures that end in logs and answers: registrations with a wrong
	// password, with connection strings that do not parse (URL, ODBC)
	// or do not connect (ADO), a restore of a point that does not exist,
	// a backup of a database that is not protected, a backup whose
	// connection drops, and one after sql1 is registered again with a
	// wrong password
	sim, err := url.Parse(h.simDSN)
	if err != nil {
		t.Fatal(err)
	}
	const (
		wrong       = "Wr0ng Pa55/word!"
		badURL      = "Badport-s3cret-7715"
		badODBC     = "Unparsed-s3cret-9431"
		unreachable = "Ado-s3cret-2290"
	)
	wrongDSN := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", wrong), Host: sim.Host, RawQuery: "encrypt=disable"}).String()
	failures := []struct {
		args []string
		ok   bool // whether the command itself succeeds
	}{
		{[]string{"instance", "add", "sql2", "--dsn", wrongDSN}, true},
		{[]string{"instance", "add", "sql3", "--dsn", "sqlserver://sa:" + badURL + "@127.0.0.1:notaport"}, false},
		{[]string{"instance", "add", "sql4", "--dsn", "odbc:server=127.0.0.1;user id=sa;password={" + badODBC}, false},
		{[]string{"instance", "add", "sql5", "--dsn", "server=127.0.0.1;port=1;user id=sa;password=" + unreachable + ";encrypt=disable"}, true},
		{[]string{"restore", "sql1/Ledger", "--point", "no-such-point", "--as", "Ghost", "--wait"}, false},
		{[]string{"backup", "sql1/Loose", "--type", "full", "--wait"}, false},
	}
	for _, f := range failures {
		if _, err := h.coffer(f.args...); (err == nil) != f.ok {
			t.Errorf("coffer %s: %v, want success %v", strings.Join(f.args, " "), err, f.ok)
		}
	}
	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: "Ledger", AfterBytes: 64 << 10})
	if out, err := h.coffer("backup", "sql1/Ledger", "--type", "full", "--wait"); err == nil {
		t.Errorf("a backup through a dropped connection succeeded:\n%s", out)
	}
	remove()
	h.mustCoffer("instance", "add", "sql1", "--dsn", wrongDSN)
	h.eventually("sql1 to be found unhealthy", func() bool {
		for _, in := range cofferJSON[[]gateway.Instance](h, "instance", "list") {
			if in.Name == "sql1" && !in.Healthy {
				return true
			}
		}
		return false
	})
	if out, err := h.coffer("backup", "sql1/Ledger", "--type", "full", "--wait"); err == nil {
		t.Errorf("a backup with a wrong password succeeded:\n%s", out)
	}
	h.eventually("the failed registrations to be recorded unhealthy", func() bool {
		bad := 0
		for _, in := range cofferJSON[[]gateway.Instance](h, "instance", "list") {
			if !in.Healthy && in.Reason != "" {
				bad++
			}
		}
		return bad == 3 // sql1, sql2, sql5
	})

	// every read endpoint the gateway serves, for each thing it names
	paths := []string{"/healthz", "/", "/metrics", "/api/v1/instances", "/api/v1/databases", "/api/v1/databases?instance=sql2",
		"/api/v1/recovery-points", "/api/v1/recovery-points?instance=sql1&database=Ledger",
		"/api/v1/recovery-ranges?instance=sql1&database=Ledger", "/api/v1/jobs", "/api/v1/policies", "/api/v1/vaults"}
	for _, j := range h.jobs() {
		paths = append(paths, "/api/v1/jobs/"+url.PathEscape(j.ID))
	}
	for _, p := range cofferJSON[[]map[string]any](h, "policy", "list") {
		paths = append(paths, "/api/v1/policies/"+url.PathEscape(fmt.Sprint(p["name"])))
	}
	for _, p := range paths {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.api+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if resp, err := http.Get(h.api + "/api/v1/jobs"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/jobs without the token: %v, %v; want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, in := range []string{"sql1", "sql2", "sql5"} {
		h.coffer("instance", "check", in)
	}

	// what it logged on the way out too
	h.run.stop()
	var spans capture
	for _, s := range h.traces.Ended() {
		spans.add([]byte(s.Name()), []byte(fmt.Sprint(s.Attributes())), []byte(s.Status().Description))
		for _, e := range s.Events() {
			spans.add([]byte(e.Name), []byte(fmt.Sprint(e.Attributes)))
		}
	}

	keys, err := h.run.vault.KeyMaterial(t.Context(), master)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []secret{
		{"the master key", keyForms(master)},
		{"the master key as given", passwordForms(h.key)},
		{"another master key", passwordForms(other)},
		{"a mistyped master key", passwordForms(mistyped)},
		{"the S3 secret key", passwordForms(h.s3.SecretKey)},
		{"the API token", passwordForms(token)},
		{"a wrong S3 secret key", passwordForms(wrongS3)},
		{"the SQL password", passwordForms(sa)},
		{"a wrong SQL password", passwordForms(wrong)},
		{"the password of a URL that does not parse", passwordForms(badURL)},
		{"the password of an ODBC string that does not parse", passwordForms(badODBC)},
		{"the password of an ADO string that does not connect", passwordForms(unreachable)},
	}
	for i, k := range keys {
		secrets = append(secrets, secret{fmt.Sprintf("vault key material %d", i), keyForms(k)})
	}
	sources := []struct {
		name string
		data []byte
	}{{"the logs", logs.Bytes()}, {"the API answers", answers.Bytes()}, {"the CLI's output", transcript.Bytes()},
		{"the NATS messages", messages.Bytes()}, {"the spans", spans.Bytes()}}
	for _, dir := range []string{h.data, files} {
		n := 0
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil {
				sources = append(sources, struct {
					name string
					data []byte
				}{"file " + p, b})
				n++
			}
			return nil
		})
		if n == 0 {
			t.Errorf("no file written in %s", dir)
		}
	}
	for _, src := range sources {
		for _, l := range findSecrets(src.data, secrets) {
			t.Errorf("%s: %s", src.name, l)
		}
	}

	// the captures hold what the test meant them to: the failures were
	// told, in the logs and to the CLI
	for _, c := range []struct {
		what string
		in   *capture
		want string
	}{
		{"logs", &logs, `"level":"WARN","msg":"job failed"`},
		{"logs", &logs, "refused the connection"},
		{"logs", &logs, `"instance":"sql2"`},
		{"logs", &logs, "login failed"},
		{"CLI output", &transcript, "login failed for user 'sa'"},
		{"CLI output", &transcript, "invalid connection string"},
		{"CLI output", &transcript, "no-such-point"},
		{"CLI output", &transcript, "the master key does not open this vault"},
		{"CLI output", &transcript, "signature"},
		{"API answers", &answers, "cannot connect to 127.0.0.1:1"},
	} {
		if !bytes.Contains(c.in.Bytes(), []byte(c.want)) {
			t.Errorf("the %s do not hold %q: the test does not see what it means to check", c.what, c.want)
		}
	}
	t.Logf("searched %d log records, %d API answers, %d CLI outputs, %d NATS messages, %d spans and %d files for %d secrets in %v",
		logs.count(), answers.count(), transcript.count(), messages.count(), spans.count(), len(sources)-5, len(secrets), time.Since(start).Round(time.Millisecond))
}

// TestSecretForms: the matcher finds a secret in each of its forms, and
// nothing in text without one.
func TestSecretForms(t *testing.T) {
	secrets := []secret{
		{"a key", keyForms([]byte("\x00\x01 0123456789abcdef0123456789ab\xff"))},
		{"a password", passwordForms("p@ss word/!&<x>")},
	}
	if got := findSecrets([]byte(`{"msg":"nothing here","dsn":"sqlserver://sa:***@host"}`), secrets); len(got) != 0 {
		t.Errorf("text with no secret: found %q", got)
	}
	for _, s := range secrets {
		for _, f := range s.forms {
			got := findSecrets([]byte(`{"msg":"login failed","err":"`+f.text+`"}`), secrets)
			if len(got) == 0 || !strings.HasPrefix(got[0], s.what+" (") {
				t.Errorf("%s written %s (%q): found %q", s.what, f.name, f.text, got)
			}
		}
	}
}

// secret is something coffer must never show, with each way of writing
// it that could end up in a log or an answer.
type secret struct {
	what  string
	forms []form
}

type form struct{ name, text string }

// keyForms are the ways key bytes are written: raw, hexadecimal, base64
// of every kind and Go's %v of a byte slice.
func keyForms(k []byte) []form {
	return []form{
		{"raw", string(k)},
		{"in hexadecimal", hex.EncodeToString(k)},
		{"in upper-case hexadecimal", strings.ToUpper(hex.EncodeToString(k))},
		{"in base64", base64.StdEncoding.EncodeToString(k)},
		{"in unpadded base64", base64.RawStdEncoding.EncodeToString(k)},
		{"in URL-safe base64", base64.URLEncoding.EncodeToString(k)},
		{"in unpadded URL-safe base64", base64.RawURLEncoding.EncodeToString(k)},
		{"as a Go byte slice", fmt.Sprint(k)},
	}
}

// passwordForms are the ways a password (or any text secret) is
// written: plain, escaped for each part of a URL, for JSON and for Go,
// and as its bytes are (keyForms).
func passwordForms(p string) []form {
	jsonText := func(html bool) string {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(html)
		e.Encode(p)
		s := strings.TrimSpace(b.String())
		return s[1 : len(s)-1]
	}
	forms := []form{
		{"plain", p},
		{"query-escaped", url.QueryEscape(p)},
		{"path-escaped", url.PathEscape(p)},
		{"escaped in a URL's user info", strings.TrimPrefix(url.UserPassword("u", p).String(), "u:")},
		{"in JSON", jsonText(true)},
		{"in JSON without HTML escaping", jsonText(false)},
		{"Go-quoted", strconv.Quote(p)[1 : len(strconv.Quote(p))-1]},
	}
	return append(forms, keyForms([]byte(p))[1:]...)
}

// findSecrets returns, for each secret in data, what it is, in which
// form, and the text around it with the secret masked.
func findSecrets(data []byte, secrets []secret) []string {
	var found []string
	for _, s := range secrets {
		for _, f := range s.forms {
			i := bytes.Index(data, []byte(f.text))
			if f.text == "" || i < 0 {
				continue
			}
			from, to := max(0, i-100), min(len(data), i+len(f.text)+100)
			around := string(data[from:i]) + "«" + s.what + "»" + string(data[i+len(f.text):to])
			found = append(found, fmt.Sprintf("%s (%s) in …%q…", s.what, f.name, around))
			break
		}
	}
	return found
}

// recordAnswers serves a proxy to the API at api that writes every
// answer's status, headers and body to to, and returns its address.
func recordAnswers(t *testing.T, api string, to *capture) string {
	t.Helper()
	target, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.ModifyResponse = func(r *http.Response) error {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		to.add([]byte(r.Request.Method+" "+r.Request.URL.String()+" "+r.Status), []byte(fmt.Sprint(r.Header)), b)
		r.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

// capture collects what is written to it from any goroutine, counting
// the writes (a log record, an answer, a command's output).
type capture struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.buf.Write(p)
}

// add writes parts as one entry, each on its own line.
func (c *capture) add(parts ...[]byte) {
	c.Write(append(bytes.Join(parts, []byte("\n")), '\n'))
}

func (c *capture) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestHelpShowsNoSecret: a secret set in the environment (the API token,
// the simulator's sa password) still sets its flag, and a flag still
// replaces it, but neither -help nor the usage printed for a mistyped
// flag shows it.
func TestHelpShowsNoSecret(t *testing.T) {
	const token, pw = "Api-T0ken-5ecret-1234", "Sim-Env-Pa55/word!"
	env := map[string]string{"COFFER_API_TOKEN": token, "COFFER_SIM_SA_PASSWORD": pw, "COFFER_DATA": t.TempDir()}
	getenv := func(k string) string { return env[k] }
	secrets := []secret{{"the API token", passwordForms(token)}, {"the sa password", passwordForms(pw)}}
	for _, args := range [][]string{{"--help"}, {"--no-such-flag"}} {
		var out bytes.Buffer
		parseUpFlags(args, getenv, &out)
		parseSimFlags(args, getenv, &out)
		runClient(t.Context(), "jobs", args, getenv, &out, &out)
		if got := strings.Count(out.String(), "-token"); got != 2 || !strings.Contains(out.String(), "-sa-password") {
			t.Errorf("coffer up, sim and jobs %s: the usage names --token %d times and --sa-password %v; want 2 and true\n%s",
				args[0], got, strings.Contains(out.String(), "-sa-password"), out.String())
		}
		for _, l := range findSecrets(out.Bytes(), secrets) {
			t.Errorf("usage for %s: %s", args[0], l)
		}
	}

	c, err := parseUpFlags(nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := settings[gateway.Config](c, gateway.Name).Token; got != token {
		t.Errorf("coffer up: token %q; want COFFER_API_TOKEN's", got)
	}
	if c, err = parseUpFlags([]string{"--token", "from-the-flag"}, getenv, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := settings[gateway.Config](c, gateway.Name).Token; got != "from-the-flag" {
		t.Errorf("coffer up --token from-the-flag: token %q", got)
	}
	s, err := parseSimFlags([]string{"--addr", "127.0.0.1:0"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.saPassword != pw {
		t.Errorf("coffer sim: sa password %q; want COFFER_SIM_SA_PASSWORD's", s.saPassword)
	}
	fs := pflag.NewFlagSet("coffer jobs", pflag.ContinueOnError)
	_, tok, _ := globalFlags(fs, getenv)
	if err := fs.Parse(nil); err != nil || *tok != token {
		t.Errorf("coffer jobs: token %q, %v; want COFFER_API_TOKEN's", *tok, err)
	}
}
