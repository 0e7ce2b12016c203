package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/services/gateway"
)

// cli holds what every client command shares.
type cli struct {
	api    *apiClient
	json   bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// tty is true when stdout is a terminal (progress bars).
	tty bool
	// poll is how often --wait asks for a job's state.
	poll time.Duration
}

// splitDB splits INSTANCE/DATABASE at the first '/': the database part
// may itself hold '/'.
func splitDB(s string) (instance, database string, err error) {
	instance, database, ok := strings.Cut(s, "/")
	if !ok || instance == "" || database == "" {
		return "", "", fmt.Errorf("name a database as INSTANCE/DATABASE, got %q", s)
	}
	return instance, database, nil
}

// show prints a name so that spaces at either end and control characters
// are visible.
func show(name string) string {
	if name == "" || strings.TrimSpace(name) != name || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

func (c *cli) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func (c *cli) instanceList(ctx context.Context) error {
	var out []gateway.Instance
	if done, err := c.get(ctx, "/api/v1/instances", &out); done {
		return err
	}
	var rows [][]string
	for _, in := range out {
		health := "healthy"
		if !in.Healthy {
			health = "UNHEALTHY: " + in.Reason
			if in.Fix != "" {
				health += " — " + in.Fix
			}
		}
		auto := "off"
		if in.Autoprotect {
			auto = "on"
		}
		rows = append(rows, []string{in.Name, in.ServerName, in.Version, strconv.Itoa(in.Databases), auto, health})
	}
	c.table("INSTANCE\tSERVER\tVERSION\tDATABASES\tAUTOPROTECT\tHEALTH", rows)
	return nil
}

func (c *cli) instanceAdd(ctx context.Context, name, dsn, mode string) error {
	var out gateway.Instance
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/instances", gateway.AddInstance{Name: name, DSN: dsn, Mode: mode}, &out); err != nil {
		return err
	}
	return c.checkAdded(ctx, name, out.Registration)
}

func (c *cli) instanceCheck(ctx context.Context, name string) error {
	res, err := c.api.checkURL(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		if err := c.printJSON(res); err != nil {
			return err
		}
		if !res.OK {
			return fmt.Errorf("instance %s: %s", res.Instance, res.Problem)
		}
		return nil
	}
	return c.printCheck(res)
}

func (c *cli) instanceDiscover(ctx context.Context, name string) error {
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/instances/"+url.PathEscape(name)+"/discover", nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "discovery of %s requested\n", name)
	return nil
}

func (c *cli) instanceAutoprotect(ctx context.Context, name string, on bool, policy string) error {
	if err := c.api.do(ctx, http.MethodPut, "/api/v1/instances/"+url.PathEscape(name)+"/autoprotect",
		gateway.Autoprotect{Enabled: on, Policy: policy}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "auto-protection of %s turned %s\n", name, map[bool]string{true: "on", false: "off"}[on])
	return nil
}

// registrationWait bounds how long `coffer instance add` waits for
// discovery to record the registration, and registrationPoll is how often
// it asks.
const (
	registrationWait = 30 * time.Second
	registrationPoll = 100 * time.Millisecond
)

// checkAdded follows an instance's registration until discovery has
// recorded it, then runs the URL check and prints what it found. The
// registration stands whatever the check finds: a problem is printed
// with its fix and returned as an error, since the instance's backups
// would fail until it is fixed; a check that could not run (no streamer,
// the registration not recorded in time) is said, and is no error.
func (c *cli) checkAdded(ctx context.Context, name, registration string) error {
	recorded, err := c.waitRegistered(ctx, name, registration)
	if err != nil {
		return err
	}
	if !recorded {
		fmt.Fprintf(c.stdout, "registration of %s requested; not recorded within %v (is discovery running? coffer instance list)\n", name, registrationWait)
		fmt.Fprintf(c.stdout, "not checked yet: run coffer instance check %s\n", name)
		return nil
	}
	fmt.Fprintf(c.stdout, "instance %s registered; discovery is listing its databases (coffer db list %s)\n", name, name)
	res, err := c.api.checkURL(ctx, name)
	if err != nil {
		fmt.Fprintf(c.stdout, "not checked: %v\nrun coffer instance check %s once that is fixed\n", err, name)
		return nil
	}
	return c.printCheck(res)
}

// waitRegistered polls the instance list until it shows registration
// (or, from a gateway that names none, the instance), for up to
// registrationWait. It reports whether it did.
func (c *cli) waitRegistered(ctx context.Context, name, registration string) (bool, error) {
	deadline := time.Now().Add(registrationWait)
	tick := time.NewTicker(registrationPoll)
	defer tick.Stop()
	for {
		var list []gateway.Instance
		if err := c.api.do(ctx, http.MethodGet, "/api/v1/instances", nil, &list); err != nil {
			return false, err
		}
		for _, in := range list {
			if in.Name == name && (registration == "" || in.Registration == registration) {
				return true, nil
			}
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
	}
}

// printCheck prints the outcome of a URL check. A problem is printed with
// its fix, and returned as an error.
func (c *cli) printCheck(res gateway.URLCheck) error {
	switch {
	case res.OK && res.Mode == "url":
		fmt.Fprintf(c.stdout, "URL mode: SQL Server reaches and trusts the streamer at %s\n", res.Streamer)
		return nil
	case res.OK:
		fmt.Fprintf(c.stdout, "disk mode: %s; backups go through the staging directory, nothing to check\n", res.ModeReason)
		return nil
	}
	what := "the check of " + res.Instance
	switch res.Mode {
	case "url":
		what = "URL mode: " + what
	case "disk":
		what = "disk mode: " + what
	}
	fmt.Fprintf(c.stdout, "%s found a problem\n  problem: %s\n  fix:     %s\n", what, res.Problem, res.Fix)
	return fmt.Errorf("instance %s cannot back up until that is fixed; then run coffer instance check %s", res.Instance, res.Instance)
}

// dbList lists the databases of instance, or of every instance.
func (c *cli) dbList(ctx context.Context, instance string) error {
	path := "/api/v1/databases"
	if instance != "" {
		path += "?instance=" + url.QueryEscape(instance)
	}
	var out []gateway.Database
	if done, err := c.get(ctx, path, &out); done {
		return err
	}
	var rows [][]string
	for _, d := range out {
		prot := "no"
		if d.Protected {
			prot = "yes (" + d.Policy + ")"
		} else if d.ProtectionState != "" {
			prot = d.ProtectionState
		}
		rows = append(rows, []string{d.Instance + "/" + show(d.Name), d.State, d.RecoveryModel, humanBytes(d.SizeBytes), prot})
	}
	c.table("DATABASE\tSTATE\tRECOVERY\tSIZE\tPROTECTED", rows)
	return nil
}

func (c *cli) protect(ctx context.Context, on bool, pos []string, policy, vault string, deleteData bool) error {
	if on {
		// one request for every database named, patterns included
		var out gateway.DatabaseRequest
		if err := c.api.do(ctx, http.MethodPost, "/api/v1/protect", gateway.DatabaseRequest{Databases: pos, Policy: policy, Vault: vault}, &out); err != nil {
			return err
		}
		for _, p := range out.Protected {
			if err := c.waitProtected(ctx, p.Instance, p.Database); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range pos {
		inst, db, err := splitDB(p)
		if err != nil {
			return &usageError{err}
		}
		req := gateway.DatabaseRequest{Instance: inst, Database: db, Policy: policy, DeleteData: deleteData}
		if deleteData {
			req.By = userName()
		}
		var out gateway.DatabaseRequest
		if err := c.api.do(ctx, http.MethodPost, "/api/v1/unprotect", req, &out); err != nil {
			return err
		}
		switch {
		case out.DeleteJob != "":
			fmt.Fprintf(c.stdout, "protection of %s/%s stopped\n", out.Instance, show(out.Database))
			if err := c.waitChange(ctx, out.DeleteJob); err != nil {
				return err
			}
		default:
			fmt.Fprintf(c.stdout, "protection of %s/%s stopped; its recovery points stay\n", out.Instance, show(out.Database))
		}
	}
	return nil
}

// waitProtected follows a protection request until the scheduler has
// recorded it, or says why not.
func (c *cli) waitProtected(ctx context.Context, instance, database string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var dbs []gateway.Database
		if err := c.api.do(ctx, http.MethodGet, "/api/v1/databases?instance="+url.QueryEscape(instance), nil, &dbs); err != nil {
			return err
		}
		for _, d := range dbs {
			if d.Name != database {
				continue
			}
			switch {
			case d.Protected:
				fmt.Fprintf(c.stdout, "%s/%s is protected (policy %s); its first full backup is queued (coffer jobs)\n", instance, show(database), d.Policy)
				return nil
			case d.ProtectionState == "failed":
				return fmt.Errorf("protection of %s/%s failed: %s", instance, show(database), d.LastError)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.poll):
		}
	}
	fmt.Fprintf(c.stdout, "protection of %s/%s requested; not confirmed yet (coffer db list %s)\n", instance, show(database), instance)
	return nil
}

func (c *cli) backup(ctx context.Context, inst, db, typ string, wait bool) error {
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/backups", gateway.BackupRequest{Instance: inst, Database: db, Type: typ}, &acc); err != nil {
		return err
	}
	return c.follow(ctx, acc, wait)
}

func (c *cli) restore(ctx context.Context, req gateway.RestoreRequest, wait bool) error {
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/restores", req, &acc); err != nil {
		return err
	}
	if req.DryRun {
		if c.json {
			return c.printJSON(acc)
		}
		c.printPlan(acc)
		if acc.Script != "" {
			fmt.Fprintf(c.stdout, "\n%s", acc.Script)
		}
		return nil
	}
	if err := c.follow(ctx, acc, wait); err != nil {
		return err
	}
	if acc.Script != "" && !c.json {
		fmt.Fprintf(c.stdout, "\nfiles and restore.sql in %s; apply them in order with:\n\n%s", req.ToDirectory, acc.Script)
	}
	return nil
}

// verify asks for a test restore of a database now.
func (c *cli) verify(ctx context.Context, inst, db, on string, wait bool) error {
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/verifications", gateway.VerifyRequest{Instance: inst, Database: db, ScratchInstance: on}, &acc); err != nil {
		return err
	}
	return c.follow(ctx, acc, wait)
}

// printPlan prints a restore plan as a database administrator reads it.
func (c *cli) printPlan(acc gateway.Accepted) {
	var rows [][]string
	for k, st := range acc.Steps {
		how := "WITH NORECOVERY"
		if k == len(acc.Steps)-1 {
			how = "WITH RECOVERY"
			switch {
			case acc.StopAt != nil:
				how = "STOPAT " + fmtTime(acc.StopAt) + ", RECOVERY"
			case acc.StopAtMark != "":
				how = fmt.Sprintf("STOPATMARK %q, RECOVERY", acc.StopAtMark)
			case acc.StopBeforeMark != "":
				how = fmt.Sprintf("STOPBEFOREMARK %q, RECOVERY", acc.StopBeforeMark)
			}
		}
		rows = append(rows, []string{strconv.Itoa(k + 1), st.RecoveryPoint, st.Type, fmtTime(&st.Taken), how})
	}
	c.table("STEP\tRECOVERY POINT\tTYPE\tTAKEN\tRESTORE", rows)
	fmt.Fprintf(c.stdout, "the database will be as of %s\n", fmtTime(acc.At))
}

// parseMoment reads a moment a person typed: RFC 3339 with an offset, or a
// date and time (seconds and milliseconds optional) in zone tz (default:
// this machine's).
func parseMoment(s, tz string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if tz != "" {
			return time.Time{}, errors.New("--tz with a --time that has its own offset: give one or the other")
		}
		return t, nil
	}
	loc := time.Local
	if tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil {
			return time.Time{}, fmt.Errorf("unknown time zone %q (use a name such as Europe/Paris or UTC)", tz)
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.000", "2006-01-02T15:04:05.000", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a moment: use \"2026-11-21 10:15:03\" or RFC 3339 such as 2026-11-21T10:15:03+01:00", s)
}

// follow prints a started job and, with wait, follows it to its end. It
// returns an error when the job failed, so the exit status says so.
func (c *cli) follow(ctx context.Context, acc gateway.Accepted, wait bool) error {
	if !wait {
		if c.json {
			return c.printJSON(acc)
		}
		fmt.Fprintf(c.stdout, "job %s queued (coffer jobs show %s)\n", acc.JobID, acc.JobID)
		return nil
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "job %s\n", acc.JobID)
	}
	j, err := c.api.waitJob(ctx, acc.JobID, c.poll, func(j gateway.Job) {
		if c.json {
			return
		}
		if c.tty {
			const width = 30
			n := int(j.Percent / 100 * width)
			fmt.Fprintf(c.stdout, "\r%-9s [%s%s] %3.0f%% %s %s   ", j.State, strings.Repeat("#", n), strings.Repeat(".", width-n), j.Percent, humanBytes(j.Bytes), j.Step)
		} else {
			fmt.Fprintf(c.stdout, "%s %3.0f%% %s\n", j.State, j.Percent, j.Step)
		}
	})
	if c.tty && !c.json {
		fmt.Fprintln(c.stdout)
	}
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(j)
	} else if j.State == "succeeded" {
		if j.RecoveryPoint != "" {
			fmt.Fprintf(c.stdout, "succeeded: recovery point %s\n", j.RecoveryPoint)
		} else {
			fmt.Fprintln(c.stdout, "succeeded")
		}
	}
	if err := jobOutcome(j); err != nil {
		return err
	}
	return nil
}

// rpChange deletes (a soft delete) or undeletes recovery points and waits
// for the committer to record it: one job per database.
func (c *cli) rpChange(ctx context.Context, del bool, ids []string, withDeps bool) error {
	verb := "undelete"
	if del {
		verb = "delete"
	}
	var acc gateway.Accepted
	req := gateway.RecoveryPointsRequest{RecoveryPoints: ids, WithDependents: withDeps, By: userName()}
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/recovery-points/"+verb, req, &acc); err != nil {
		return err
	}
	var errs []error
	for _, id := range acc.Jobs {
		errs = append(errs, c.waitChange(ctx, id))
	}
	return errors.Join(errs...)
}

// changeWait bounds the wait for the committer to record a delete or
// undelete, which takes it a moment when it runs.
const changeWait = time.Minute

// userName names who runs the command, for the record of a deletion; ""
// when the system cannot say.
func userName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// waitChange follows a delete or undelete job to its end and prints what
// it did.
func (c *cli) waitChange(ctx context.Context, id string) error {
	wctx, cancel := context.WithTimeout(ctx, changeWait)
	defer cancel()
	j, err := c.api.waitJob(wctx, id, c.poll, nil)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return fmt.Errorf("job %s not done after %v: is the committer running? (coffer jobs show %s)", id, changeWait, id)
	}
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(j)
	}
	if err := jobOutcome(j); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintln(c.stdout, j.Detail)
	}
	return nil
}

func (c *cli) rpList(ctx context.Context, inst, db string, deleted bool) error {
	var out []gateway.RecoveryPoint
	q := "/api/v1/recovery-points?instance=" + url.QueryEscape(inst) + "&database=" + url.QueryEscape(db)
	if deleted {
		q += "&deleted=true"
	}
	if err := c.api.do(ctx, http.MethodGet, q, nil, &out); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(out)
	}
	var rows [][]string
	for _, rp := range out {
		keep := fmtTime(rp.ExpiresAt)
		if len(rp.Tags) > 0 {
			keep += " (" + strings.Join(rp.Tags, ",") + ")"
		}
		note := ""
		if rp.Deleted != nil {
			note = "DELETED " + fmtTime(rp.Deleted) + " by " + rp.DeletedBy + ", can be undeleted until " + fmtTime(rp.RestorableUntil) + "; "
		}
		if v := rp.Verified; v != nil {
			if v.Passed {
				note = "verified " + fmtTime(v.At) + "; "
			} else {
				note = "TEST RESTORE FAILED " + fmtTime(v.At) + ": " + v.Detail + "; "
			}
		}
		if rp.Vault != "" {
			note += "in vault " + rp.Vault + "; "
		}
		if len(rp.Copies) > 0 {
			note += "copied to " + strings.Join(rp.Copies, ", ") + "; "
		}
		if rp.HealsBreak != "" {
			note += "new chain; the chain broke before: " + rp.HealsBreak
		}
		if rp.ChainBreak != "" {
			note += "CHAIN BROKEN: " + rp.ChainBreak
		}
		note = strings.TrimSuffix(note, "; ")
		rows = append(rows, []string{rp.ID, rp.Type, fmtTime(rp.Finish), rp.FirstLSN, rp.LastLSN, humanBytes(rp.Size), humanBytes(rp.NewBytes), keep, note})
	}
	c.table("RECOVERY POINT\tTYPE\tTAKEN\tFIRST LSN\tLAST LSN\tSIZE\tNEW IN VAULT\tKEPT UNTIL\tNOTE", rows)
	fmt.Fprintln(c.stdout)
	return c.printRanges(ctx, inst, db)
}

// printRanges prints the stretches of time a database can be restored to,
// with the reason each one ends.
func (c *cli) printRanges(ctx context.Context, inst, db string) error {
	var ranges []gateway.RecoveryRange
	if err := c.api.do(ctx, http.MethodGet, "/api/v1/recovery-ranges?instance="+url.QueryEscape(inst)+"&database="+url.QueryEscape(db), nil, &ranges); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(ranges)
	}
	if len(ranges) == 0 {
		fmt.Fprintln(c.stdout, "no moment can be restored yet: there is no full backup")
		return nil
	}
	fmt.Fprintln(c.stdout, "can be restored to any moment:")
	for _, r := range ranges {
		fmt.Fprintf(c.stdout, "  from %s to %s\n", fmtTime(&r.From), fmtTime(&r.To))
		if r.Break != "" {
			fmt.Fprintf(c.stdout, "  BREAK: %s\n", r.Break)
		}
	}
	return nil
}

func (c *cli) policyList(ctx context.Context) error {
	var out []policy.Policy
	if done, err := c.get(ctx, "/api/v1/policies", &out); done {
		return err
	}
	var rows [][]string
	for _, p := range out {
		full := fmt.Sprintf("%s %02d:%02d", p.Full.Frequency, p.Full.Hour, p.Full.Minute)
		if p.Full.Frequency == policy.Weekly {
			full += fmt.Sprint(" ", p.Full.Days)
		}
		diff, logs := "-", "-"
		if p.Differential != nil {
			diff = fmt.Sprintf("%02d:%02d %v", p.Differential.Hour, p.Differential.Minute, p.Differential.Days)
		}
		if p.Log != nil {
			logs = "every " + time.Duration(p.Log.Every).String()
		}
		tz := p.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		rows = append(rows, []string{p.Name, full, diff, logs, p.Retention.Full.String(), tz, string(p.Compression.OrDefault())})
	}
	c.table("POLICY	FULL	DIFFERENTIAL	LOG	KEEP FULLS	ZONE	COMPRESSION", rows)
	return nil
}

func (c *cli) policyShow(ctx context.Context, name string) error {
	var p policy.Policy
	if err := c.api.do(ctx, http.MethodGet, "/api/v1/policies/"+url.PathEscape(name), nil, &p); err != nil {
		return err
	}
	return c.printJSON(p)
}

// policySet saves the policy name from a JSON file, or standard input
// for "-".
func (c *cli) policySet(ctx context.Context, name, file string) error {
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(c.stdin)
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return &usageError{fmt.Errorf("--file: %w", err)}
	}
	var p json.RawMessage
	if err := json.Unmarshal(raw, &p); err != nil {
		return usagef("%s is not JSON: %w", file, err)
	}
	if err := c.api.do(ctx, http.MethodPut, "/api/v1/policies/"+url.PathEscape(name), p, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "policy %s saved; it takes effect at each database's next due time\n", name)
	return nil
}

func (c *cli) policyDelete(ctx context.Context, name string) error {
	if err := c.api.do(ctx, http.MethodDelete, "/api/v1/policies/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "policy %s deleted\n", name)
	return nil
}

func (c *cli) jobsList(ctx context.Context) error {
	var out []gateway.Job
	if done, err := c.get(ctx, "/api/v1/jobs", &out); done {
		return err
	}
	var rows [][]string
	for _, j := range out {
		what := j.Kind
		if j.BackupType != "" {
			what += " " + j.BackupType
		}
		db := jobDatabase(j)
		if j.Target != "" {
			db += " -> " + j.Target
		}
		note := j.Error
		if note == "" && j.State == "running" {
			note = fmt.Sprintf("%.0f%% %s", j.Percent, j.Step)
		}
		rows = append(rows, []string{j.ID, what, db, j.State, fmtTime(j.Updated), note})
	}
	c.table("JOB\tKIND\tDATABASE\tSTATE\tUPDATED\tNOTE", rows)
	return nil
}

func (c *cli) jobShow(ctx context.Context, id string) error {
	j, err := c.api.job(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(j)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{{"job", j.ID}, {"kind", j.Kind + " " + j.BackupType}, {"database", jobDatabase(j)},
		{"target", j.Target}, {"state", j.State}, {"detail", j.Detail}, {"progress", fmt.Sprintf("%.0f%% %s (%s)", j.Percent, j.Step, humanBytes(j.Bytes))},
		{"recovery point", j.RecoveryPoint}, {"error", j.Error}, {"failed in", j.Service}, {"trace", j.TraceID},
		{"cancel asked by", j.CancelRequestedBy}, {"cancelled by", j.CancelledBy}, {"cannot be cancelled", j.NoCancel},
		{"created", fmtTime(j.Created)}, {"updated", fmtTime(j.Updated)}} {
		if strings.TrimSpace(kv[1]) != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(j.Steps) > 0 {
		var rows [][]string
		for _, st := range j.Steps {
			rows = append(rows, []string{st.Name, fmtTime(st.Began), fmt.Sprintf("%.1fs", st.Seconds), show(st.Outcome)})
		}
		fmt.Fprintln(c.stdout)
		c.table("STEP\tBEGAN\tTOOK\tOUTCOME", rows)
	}
	if len(j.Log) > 0 {
		var rows [][]string
		for _, l := range j.Log {
			rows = append(rows, []string{fmtTime(l.Time), l.Level, l.Service, l.Message})
		}
		fmt.Fprintln(c.stdout)
		c.table("TIME\tLEVEL\tSERVICE\tMESSAGE", rows)
	}
	return nil
}

// jobCancel asks for a job to be cancelled and follows it to its end: a
// queued job ends at once, a running one as soon as the service running
// it stops it. It fails when the job cannot be cancelled (it ended, or an
// overwrite restore went past its point of no return).
func (c *cli) jobCancel(ctx context.Context, id string) error {
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, &acc); err != nil {
		return err
	}
	j, err := c.api.waitJob(ctx, id, c.poll, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(j)
	}
	if j.State == "cancelled" {
		fmt.Fprintf(c.stdout, "job %s cancelled: %s\n", j.ID, j.Error)
		return nil
	}
	return fmt.Errorf("job %s %s before the cancel took effect: %s", j.ID, j.State, cmp.Or(j.Error, j.Detail))
}

// jobDatabase names a job's database; none for a job of no database (a
// rebuild of the catalog).
func jobDatabase(j gateway.Job) string {
	if j.Instance == "" && j.Database == "" {
		return ""
	}
	return j.Instance + "/" + show(j.Database)
}

// jobOutcome is the error of a job that ended without succeeding: failed,
// or cancelled (both exit with exitFailed).
func jobOutcome(j gateway.Job) error {
	switch j.State {
	case "failed":
		return fmt.Errorf("job %s failed: %s", j.ID, j.Error)
	case "cancelled":
		return fmt.Errorf("job %s cancelled by %s: %s", j.ID, show(j.CancelledBy), j.Error)
	}
	return nil
}
