package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/pkg/alert/alerttest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/services/gateway"
)

// chromium finds the browser the dashboard's tests drive: COFFER_CHROMIUM,
// else Debian's chromium (scripts/install-tools.sh installs it). Without
// one the test fails in CI (CI set) and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("COFFER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found (chromium, chromium-browser, google-chrome or COFFER_CHROMIUM): run scripts/install-tools.sh")
	}
	t.Skip("no Chromium found: scripts/install-tools.sh installs it (in CI this test fails instead)")
	return ""
}

// screenshotDir is where the dashboard's tests save their screenshots:
// COFFER_SCREENSHOTS, else testdata/screenshots/TEST (git-ignored).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COFFER_SCREENSHOTS")
	if dir == "" {
		// this run's screenshots alone
		dir = filepath.Join("testdata", "screenshots", t.Name())
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium tab on the dashboard.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	shot int
}

func newBrowser(t *testing.T, chrome, base string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelTab)
	b := &browser{t: t, ctx: ctx, base: base, dir: screenshotDir(t)}
	// the first run starts the browser: no timeout on it (chromedp.Run)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(412, 915), chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("start Chromium and open the dashboard: %v", err)
	}
	return b
}

// do runs steps, failing the test after a minute.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// screenshot saves the whole page as NN-name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.shot++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// open goes to a page of the dashboard (#/jobs), as following a link
// does, and waits until sel shows.
func (b *browser) open(fragment, sel string) {
	b.t.Helper()
	b.do("open "+fragment, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void]("void (location.hash = "+jsString(fragment)+")")(ctx, t)
		return err
	}), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// waitText waits until the text of sel contains want (not empty: the
// protocol drops an empty argument), and returns it.
func (b *browser) waitText(sel, want string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.PollFunction[string](
		`(sel, want) => { const e = document.querySelector(sel); return e && e.innerText.includes(want) ? e.innerText : false; }`,
		chromedp.WithPollingArgs(sel, want), chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(90*time.Second)))
	if err != nil {
		b.screenshot("timeout")
		now := eval[string](b, "(document.querySelector("+jsString(sel)+") || {innerText: 'nothing'}).innerText")
		b.t.Fatalf("%s: text %q, want it to contain %q: %v", sel, now, want, err)
	}
	return got
}

// count returns how many elements match sel now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return eval[int](b, "document.querySelectorAll("+jsString(sel)+").length")
}

// fill sets the value of an input or a select as a person's typing or
// choosing does: the page hears input and change.
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	ok := eval[bool](b, `(() => { const e = document.querySelector(`+jsString(sel)+`); if (!e) return false;
		e.value = `+jsString(value)+`; e.dispatchEvent(new Event("input", {bubbles: true}));
		e.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
	if !ok {
		b.t.Fatalf("no %s to fill", sel)
	}
}

// click clicks sel with the mouse, where it shows.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// signIn signs in on the sign-in page as name.
func (b *browser) signIn(name, password, role string) {
	b.t.Helper()
	b.do("sign in as "+name, chromedp.WaitVisible(chromedp.CSS("#signin")))
	b.fill(`#signin input[name=name]`, name)
	b.fill(`#signin input[name=password]`, password)
	b.screenshot("signin-" + name)
	b.click(`#signin button[type=submit]`)
	b.waitText("#whoami", name+" ("+role+")")
}

// addUser makes a user with a password through the API, signed in with
// token (none: the first user, made on loopback while no user exists),
// and returns the user's own API token.
func addUser(t *testing.T, api, token, name, role, password string) string {
	t.Helper()
	var out gateway.NewToken
	req := gateway.AddUser{Name: name, Role: role, Password: password, Token: true}
	if err := newAPIClient(api, token).do(t.Context(), "POST", "/api/v1/users", req, &out); err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	return out.Token
}

// TestDashboard drives the web dashboard in headless Chromium, on a
// phone-sized screen, against coffer up and a simulated SQL Server: an
// admin signs in, adds the instance, protects its databases, backs one
// up, restores it to a moment picked on the timeline under a new name
// and sees the job succeed (and the copy hold what the source held
// then), sees another tool's log backup marked on the timeline as a
// chain break, sees a failed backup's alert open on the alerts page, sent
// to the webhook (shown by its host, never its path), then resolved by the
// next backup, meets a policy's validation error next to its field,
// protects a database into a named vault picked on the databases page and
// unprotects two in one request; an operator then sees no overwrite, and a
// viewer no write button, and the alerts.
func TestDashboard(t *testing.T) {
	chrome := chromium(t)             // before anything starts: it may skip
	hook := alerttest.NewHook(t, nil) // its URL's path stands for a token
	h := startHarness(t, harnessOptions{pages: 64, args: []string{"--alert-webhook", hook.URL}})
	for _, db := range []string{"Sales", "HR", "Ops"} {
		if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.sim.Commit(db, 4); err != nil {
			t.Fatal(err)
		}
	}
	const password = "correct horse battery"
	admin := addUser(t, h.api, "", "ada", "admin", password)
	h.token = admin // the CLI's, from now on
	addUser(t, h.api, admin, "vic", "viewer", password)
	addUser(t, h.api, admin, "otto", "operator", password)

	b := newBrowser(t, chrome, h.api)
	b.signIn("ada", password, "admin")
	b.screenshot("overview")

	// add the instance; discovery then reports it healthy
	b.open("#/instances", "#add-instance")
	// tested before it is saved: a wrong password saves nothing
	wrong, err := url.Parse(h.simDSN)
	if err != nil {
		t.Fatal(err)
	}
	wrong.User = url.UserPassword("sa", "not-the-password")
	b.fill(`#add-instance input[name=name]`, "sql1")
	b.fill(`#add-instance input[name=dsn]`, wrong.String())
	b.click(`#add-instance button[type=submit]`)
	b.waitText("#instance-test", "Login failed")
	b.screenshot("instance-test-failed")
	if n := b.count(`#instances tbody tr`); n != 0 {
		t.Errorf("%d instances listed after a failed test; want none", n)
	}
	b.fill(`#add-instance input[name=dsn]`, h.simDSN)
	b.click(`#add-instance button[type=submit]`)
	b.waitText(`#instances tr[data-instance="sql1"]`, "healthy")
	b.screenshot("instances")

	// protect both databases at once, into the vault preselected: the
	// default
	b.open("#/databases", "#databases")
	b.waitText(`#databases tr[data-db="sql1/Sales"]`, "unprotected")
	b.waitText(`#databases tr[data-db="sql1/HR"]`, "unprotected")
	if got := eval[string](b, `document.querySelector("#protect-vault").value`); got != "default" {
		t.Errorf("vault preselected %q; want default", got)
	}
	b.click(`#databases tr[data-db="sql1/Sales"] input[type=checkbox]`)
	b.click(`#databases tr[data-db="sql1/HR"] input[type=checkbox]`)
	b.click(`#protect`)
	b.waitText("#databases-notice", "Protection asked for 2 database(s) into the default vault")
	b.waitText(`#databases tr[data-db="sql1/Sales"]`, "protected (default)")
	b.waitText(`#databases tr[data-db="sql1/HR"]`, "protected (default)")
	b.screenshot("databases-protected")

	// the first full, then more transactions and a log backup on demand
	b.open("#/db/sql1/Sales", "#timeline")
	b.waitText("#recovery-points tbody", "full")
	if _, err := h.sim.Commit("Sales", 4); err != nil {
		t.Fatal(err)
	}
	b.open("#/databases", "#databases")
	b.fill(`#db-filter`, "Sales")
	b.click(`#databases tr[data-db="sql1/Sales"] input[type=checkbox]`)
	b.fill(`#backup-type`, "log")
	b.click(`#backup`)
	notice := b.waitText("#databases-notice", "Jobs: ")
	backupJob := strings.TrimSpace(notice[strings.Index(notice, "Jobs: ")+len("Jobs: "):])
	b.open("#/jobs/"+backupJob, "#job")
	b.waitText("#job-state-value", "succeeded")
	// its steps, with their durations, and what the services logged
	// about it
	b.waitText("#job-steps tbody", "backup")
	b.waitText("#job-log tbody", "backup streamed")
	b.screenshot("backup-job")
	if n := b.count("#job-cancel"); n != 0 {
		t.Errorf("a succeeded job shows %d Cancel buttons; want none", n)
	}

	// a running backup (stalled inside SQL Server's BACKUP) is cancelled
	// from its page, which asks first
	stalled := stalledBackup(t, h, admin, "Sales")
	b.open("#/jobs/"+stalled, "#job")
	b.waitText("#job-state-value", "running")
	b.click("#job-cancel")
	b.waitText("#job-cancel-confirm", "Cancel job "+stalled+"?")
	b.click("#job-cancel-yes")
	b.waitText("#job-state-value", "cancelled")
	b.waitText("#job", "cancelled by ada")
	b.screenshot("cancelled-job")
	if _, err := h.sim.Commit("Sales", 4); err != nil {
		t.Fatal(err)
	}

	// restore to a moment picked on the timeline, to a new name
	b.open("#/db/sql1/Sales", "#timeline")
	b.waitText("#recovery-points tbody", "log")
	b.do("wait for a restorable range", chromedp.WaitVisible(chromedp.CSS("#ranges tbody tr")))
	b.click(`#timeline rect.range`)
	picked := b.waitText(`#restore-utc`, "(UTC)")
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSuffix(picked, " (UTC)"))
	if err != nil {
		t.Fatalf("the picked moment %q: %v", picked, err)
	}
	// the same moment typed as Kolkata's wall clock (UTC+05:30) is the same
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	b.fill(`#restore-zone`, "Asia/Kolkata")
	b.fill(`#restore-moment`, at.In(kolkata).Format("2006-01-02 15:04:05.000"))
	b.waitText(`#restore-utc`, at.UTC().Format("2006-01-02T15:04:05.000Z"))
	b.fill(`#restore-target`, "Sales_copy")
	b.click(`#restore-plan`)
	b.waitText("#restore-plan-result", "sql1/Sales_copy will be as of")
	b.screenshot("restore-plan")
	b.click(`#restore-run`)
	b.do("follow the restore's job", chromedp.WaitVisible(chromedp.CSS(`#job`)))
	b.waitText("#job-state-value", "succeeded")
	b.waitText("#job", "sql1/Sales_copy")
	b.screenshot("restore-job")
	want, err := h.sim.ContentHash("Sales", at)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.sim.ContentHash("Sales_copy", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Sales_copy holds %s; want Sales as of %v, %s", got, at, want)
	}

	// another tool's log backup breaks the chain: the timeline marks it
	h.exec("BACKUP LOG [Sales] TO DISK = @p1", filepath.Join(t.TempDir(), "other.trn"))
	if _, err := h.sim.Commit("Sales", 2); err != nil {
		t.Fatal(err)
	}
	out, err := h.coffer("backup", "sql1/Sales", "--type", "log", "--wait")
	t.Logf("log backup after the foreign one: %v\n%s", err, out)
	b.open("#/db/sql1/Sales", "#timeline")
	b.do("wait for the break on the timeline", chromedp.WaitVisible(chromedp.CSS("#timeline line.break")))
	b.screenshot("chain-break")

	// a backup of HR fails (SQL Server drops the connection): the alerter
	// opens an alert, which the alerts page shows with the chain break
	// above, and resolves it when the next backup of HR commits
	remove := h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultDropConnection, Database: "HR", AfterBytes: 16 << 10})
	b.open("#/databases", "#databases")
	b.fill(`#db-filter`, "HR")
	b.click(`#databases tr[data-db="sql1/HR"] input[type=checkbox]`)
	b.fill(`#backup-type`, "full")
	b.click(`#backup`)
	notice = b.waitText("#databases-notice", "Backup asked for 1 database(s). Jobs: ")
	failedJob := strings.TrimSpace(notice[strings.Index(notice, "Jobs: ")+len("Jobs: "):])
	b.open("#/jobs/"+failedJob, "#job")
	b.waitText("#job-state-value", "failed")
	remove()
	b.open("#/alerts", "#alert-rules")
	b.waitText(`#open-alerts tr[data-alert="job_failed.sql1.HR.backup"]`, "backup job failed for database [HR] on sql1")
	b.waitText(`#alert-rules tr[data-rule="job_failed"]`, "on")
	hookURL, err := url.Parse(hook.URL)
	if err != nil {
		t.Fatal(err)
	}
	b.waitText(`#alert-rules tr[data-rule="job_failed"]`, "json-")
	b.waitText(`#alert-channels`, hookURL.Host)
	if page := eval[string](b, "document.body.innerText"); strings.Contains(page, hookURL.Path) {
		t.Errorf("the alerts page shows the webhook's path %s, which stands for its token", hookURL.Path)
	}
	b.waitText(`#open-alerts tr[data-alert="job_failed.sql1.HR.backup"] span.ok`, "sent")
	alerttest.Eventually(t, 30*time.Second, func() bool { return len(hook.Got()) >= 1 }, func() string { return fmt.Sprint(hook.Got()) })
	b.screenshot("alerts")
	b.open("#/", "#overview")
	b.waitText("#open-alerts-card", "open alerts")
	if n := eval[string](b, `document.querySelector("#open-alerts-count").innerText`); n == "0" {
		t.Errorf("the overview counts %s open alerts while HR's is open", n)
	}
	b.click("#open-alerts-card")
	b.do("the overview's card leads to the alerts", chromedp.WaitVisible(chromedp.CSS("#open-alerts")))
	h.mustCoffer("backup", "sql1/HR", "--type", "full", "--wait")
	b.waitText(`#resolved-alerts tr[data-alert="job_failed.sql1.HR.backup"]`, "backup job failed for database [HR] on sql1")
	b.do("HR's alert leaves the open ones", chromedp.WaitNotPresent(chromedp.CSS(`#open-alerts tr[data-alert="job_failed.sql1.HR.backup"]`)))
	b.screenshot("alerts-resolved")

	// the jobs page filters; the overview counts what is protected
	b.open("#/jobs", "#jobs")
	b.fill("#job-kind", "restore")
	b.waitText("#jobs tbody", "sql1/Sales → sql1/Sales_copy")
	if n := b.count("#jobs tbody tr"); n != 1 {
		t.Errorf("%d restore jobs listed; want 1", n)
	}
	b.screenshot("jobs-restores")
	b.open("#/", "#overview")
	b.waitText("#protected-count", "2")
	b.screenshot("overview-protected")

	// a policy's validation error shows next to its field
	b.open("#/policies", `#policies tr[data-policy="default"]`)
	b.screenshot("policies")
	b.open("#/policies/default", "#policy-full-hour")
	b.fill(`#policy-full-hour`, "25")
	b.click(`#policy-save`)
	b.waitText(`.field-error[data-field="full.hour"]`, "25 is not an hour")
	b.screenshot("policy-error")

	// a new policy, saved from the form, shows in the list
	b.open("#/policies/+new", "#policy-name")
	b.fill("#policy-name", "gold")
	b.fill("#policy-full-hour", "2")
	b.click("#policy-save")
	b.waitText(`#policies tr[data-policy="gold"]`, "daily at 02:00")

	// Ops is protected into a named vault, chosen on the page
	var created gateway.Accepted
	if err := newAPIClient(h.api, admin).do(t.Context(), "POST", "/api/v1/vaults",
		gateway.VaultRequest{Name: "archive", Dir: t.TempDir()}, &created); err != nil {
		t.Fatal(err)
	}
	h.eventually("the vault archive created", func() bool {
		var j gateway.Job
		err := newAPIClient(h.api, admin).do(t.Context(), "GET", "/api/v1/jobs/"+created.JobID, nil, &j)
		return err == nil && j.State == "succeeded"
	})
	// the jobs page filters every kind of job, a vault's creation too
	b.open("#/jobs", "#jobs")
	b.fill("#job-kind", "vault-create")
	b.waitText("#jobs tbody", created.JobID)
	if n := b.count("#jobs tbody tr"); n != 1 {
		t.Errorf("%d vault-create jobs listed; want 1", n)
	}
	b.open("#/databases", `#databases tr[data-db="sql1/Ops"]`)
	b.waitText("#protect-vault", "archive")
	b.fill("#protect-vault", "archive")
	b.click(`#databases tr[data-db="sql1/Ops"] input[type=checkbox]`)
	b.click(`#protect`)
	b.waitText("#databases-notice", "Protection asked for 1 database(s) into vault archive.")
	b.waitText(`#databases tr[data-db="sql1/Ops"]`, "protected (default) into vault archive")
	b.screenshot("databases-vault")

	// unprotecting asks first, then stops protecting HR and Ops in one
	// request
	b.click(`#databases tr[data-db="sql1/HR"] input[type=checkbox]`)
	b.click(`#databases tr[data-db="sql1/Ops"] input[type=checkbox]`)
	b.click("#unprotect")
	b.waitText("#unprotect-confirm", "Stop protecting sql1/HR, sql1/Ops?")
	b.click("#unprotect-yes")
	b.waitText("#databases-notice", "Unprotected 2 database(s).")
	b.waitText(`#databases tr[data-db="sql1/HR"]`, "unprotected")
	b.waitText(`#databases tr[data-db="sql1/Ops"]`, "unprotected")
	b.waitText(`#databases tr[data-db="sql1/Sales"]`, "protected (default)")

	// an operator may restore, but not over a database
	b.click(`#whoami button`)
	b.signIn("otto", password, "operator")
	b.open("#/db/sql1/Sales", "#restore-plan")
	b.screenshot("operator-database")
	if n := b.count("#restore-overwrite"); n != 0 {
		t.Errorf("an operator sees %d overwrite choices; want none", n)
	}

	// a viewer sees no write buttons
	b.click(`#whoami button`)
	b.signIn("vic", password, "viewer")
	b.open("#/db/sql1/Sales", "#timeline")
	b.waitText("#recovery-points tbody", "log")
	b.screenshot("viewer-database")
	for _, sel := range []string{"#restore", "#restore-plan", "#restore-run"} {
		if n := b.count(sel); n != 0 {
			t.Errorf("a viewer sees %d %s; want none", n, sel)
		}
	}
	b.open("#/databases", `#databases tr[data-db="sql1/Sales"]`)
	for _, sel := range []string{"#protect", "#unprotect", "#backup", "#databases input[type=checkbox]"} {
		if n := b.count(sel); n != 0 {
			t.Errorf("a viewer sees %d %s on the databases page; want none", n, sel)
		}
	}
	b.open("#/alerts", "#alert-rules")
	b.waitText(`#resolved-alerts`, "backup job failed for database [HR] on sql1")
	b.screenshot("viewer-alerts")
	// nor a Cancel button on a running job
	stalled = stalledBackup(t, h, admin, "Sales")
	b.open("#/jobs/"+stalled, "#job")
	b.waitText("#job-state-value", "running")
	if n := b.count("#job-cancel"); n != 0 {
		t.Errorf("a viewer sees %d Cancel buttons on a running job; want none", n)
	}
	if err := newAPIClient(h.api, admin).do(t.Context(), "POST", "/api/v1/jobs/"+stalled+"/cancel", nil, nil); err != nil {
		t.Fatal(err)
	}
	b.waitText("#job-state-value", "cancelled")
	t.Logf("screenshots in %s", b.dir)
}

// stalledBackup starts a full backup of db on sql1 that stalls inside
// SQL Server's BACKUP (after its first 16 pages), and returns its job
// once the simulator holds it there. The stall ends with the test.
func stalledBackup(t *testing.T, h *harness, token, db string) string {
	t.Helper()
	t.Cleanup(h.sim.InjectFault(mssqlsim.Fault{Kind: mssqlsim.FaultStall, Database: db, AfterBytes: 16 * mssqlsim.PageSize}))
	var acc gateway.Accepted
	c := newAPIClient(h.api, token)
	if err := c.do(t.Context(), "POST", "/api/v1/backups", gateway.BackupRequest{Instance: "sql1", Database: db, Type: "full"}, &acc); err != nil {
		t.Fatal(err)
	}
	h.eventually("the backup stalled in BACKUP", func() bool { return h.sim.Stats().Stalled == 1 })
	h.eventually("the stalled backup running", func() bool {
		var j gateway.Job
		return c.do(t.Context(), "GET", "/api/v1/jobs/"+acc.JobID, nil, &j) == nil && j.State == "running"
	})
	return acc.JobID
}
