package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/committer"
	"github.com/cofferhq/coffer/services/gateway"
)

const vaultUsage = `usage: coffer vault check [--full] [--vault default|NAME] [--nats URL] [--data DIR] [--master-key-file FILE]
       coffer vault create [--object-lock governance|compliance] [--data DIR] [--master-key-file FILE]
       coffer vault create NAME --dir DIR | --s3-endpoint HOST:PORT --s3-bucket B [--s3-prefix P] [--s3-access-key K] [--s3-ca-file FILE] [--s3-insecure-http] [--object-lock governance|compliance]
       coffer vault list
       coffer vault recover [--data DIR] [--master-key-file FILE]
       coffer vault rebuild [--prune]
       coffer vault rekey --new-master-key-file FILE [--data DIR] [--master-key-file FILE]
       coffer vault key rotate [--data DIR] [--master-key-file FILE]`

// runVault runs the commands on the vault, which open it where `coffer
// up` keeps it (the same --data, COFFER_VAULT_DIR or COFFER_S3_* settings
// and master key).
func runVault(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "check":
		return runVaultCheck(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 1 && args[0] == "create" && !strings.HasPrefix(args[1], "-"):
		// a named vault, created through the API by the committer
		return runClient(ctx, "vault", args, getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "create":
		return runVaultCreate(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "list":
		return runClient(ctx, "vault", args, getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "recover":
		return runVaultRecover(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "rebuild":
		return runClient(ctx, "vault", args, getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "rekey":
		return runVaultRekey(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 1 && args[0] == "key" && args[1] == "rotate":
		return runKeyRotate(ctx, args[2:], getenv, stdout, stderr)
	}
	return errors.New(vaultUsage)
}

// parseVaultFlags parses the settings every vault command shares and, if
// own registers them, the command's own.
func parseVaultFlags(name string, args []string, getenv func(string) string, stderr io.Writer, own func(*daemon.Flags)) (*upConfig, error) {
	fs := flag.NewFlagSet("coffer vault "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := daemon.NewFlags(fs, getenv)
	c := &upConfig{}
	f.String(&c.dataDir, "data", "COFFER_DATA", defaultDataDir(getenv), "coffer's data directory")
	c.common.Register(f, true)
	if own != nil {
		own(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := errors.Join(f.Err(), c.common.Validate()); err != nil {
		return nil, err
	}
	return c, nil
}

// openVault opens the vault, returning it and the master key.
func (c *upConfig) openVault(ctx context.Context, stdout io.Writer) (*vault.Vault, []byte, error) {
	store, key, err := c.openStore(true, stdout)
	if err != nil {
		return nil, nil, err
	}
	v, err := daemon.OpenVault(ctx, store, key, false)
	if err != nil {
		return nil, nil, err
	}
	return v, key, nil
}

// runVaultCheck runs `coffer vault check`: it checks that every recovery
// point's chunks exist (fast) or also authenticate (--full), in the
// default vault and in every named vault the default vault's copy of
// the vaults records (copies included), or in the one vault --vault
// names. Damage makes it fail, naming the vault and the recovery points
// it affects; a named vault that cannot be opened fails it too, after
// the others are checked. Given NATS (--nats), it publishes each vault's
// result for the alerter, as NATS user vault-check: a check that found
// damage or could not finish opens that vault's alert, the next one that
// passed resolves it.
func runVaultCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var full bool
	var name string
	c, err := parseVaultFlags("check", args, getenv, stderr, func(f *daemon.Flags) {
		f.FlagSet().BoolVar(&full, "full", false, "read and authenticate every chunk (default: only check that every chunk exists)")
		f.FlagSet().Lookup("nats").Usage = "URL of the NATS server or cluster to publish the result on, for the alerter (COFFER_NATS_URL; default none: the result is not published)"
		f.FlagSet().StringVar(&name, "vault", "", "check this vault alone: default, or a named vault (coffer vault list), found through the default vault's record of it (default: every vault)")
	})
	if err != nil {
		return err
	}
	// NATS's settings are checked before the check, which may take hours
	var nopts []nats.Option
	if c.common.NATSURL != "" {
		if nopts, err = daemon.NATSOptions(topology.VaultCheck, getenv, slog.New(slog.NewTextHandler(stderr, nil))); err != nil {
			return err
		}
	}
	def, key, err := c.openVault(ctx, stdout)
	if err != nil {
		return err
	}
	mode := vault.CheckFast
	if full {
		mode = vault.CheckFull
	}
	if name != "" && !daemon.IsDefaultVault(name) {
		v, where, err := openNamedVault(ctx, def, key, name)
		if err != nil {
			return err
		}
		return checkVault(ctx, v, where, mode, c.common.NATSURL, nopts, stdout)
	}
	errs := []error{checkVault(ctx, def, vaultWhere(c.store()), mode, c.common.NATSURL, nopts, stdout)}
	if name != "" {
		return errs[0]
	}
	recs, err := daemon.VaultRecordsIn(ctx, def)
	if err != nil {
		return errors.Join(errs[0], fmt.Errorf("the named vaults are not checked: %w", err))
	}
	for _, r := range recs {
		if ctx.Err() != nil {
			break
		}
		where := r.GetName() + " (" + namedWhere(r.GetDir(), r.GetS3Endpoint(), r.GetS3Bucket(), r.GetS3Prefix()) + ")"
		fmt.Fprintln(stdout)
		v, err := daemon.OpenNamed(ctx, r, key)
		if err != nil {
			fmt.Fprintf(stdout, "vault %s, %s check: NOT CHECKED: %v\n", where, mode, err)
			err = fmt.Errorf("not checked: %w", err)
			ev := &cofferv1.VaultChecked{Vault: where, Mode: mode.String(), Error: err.Error()}
			errs = append(errs, err, publishVaultChecked(ctx, c.common.NATSURL, nopts, ev, stdout))
			continue
		}
		errs = append(errs, checkVault(ctx, v, where, mode, c.common.NATSURL, nopts, stdout))
	}
	if n := len(recs) + 1; n > 1 {
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		fmt.Fprintf(stdout, "\n%d vaults checked, %d failed\n", n, failed)
	}
	return errors.Join(append(errs, ctx.Err())...)
}

// checkVault checks the vault v, found at where, prints what it found,
// and publishes the result for the alerter when url names a NATS. It
// fails on damage, or when the check could not finish.
func checkVault(ctx context.Context, v *vault.Vault, where string, mode vault.CheckMode, url string, nopts []nats.Option, stdout io.Writer) error {
	ev := &cofferv1.VaultChecked{Vault: where, Mode: mode.String()}
	rep, err := v.Check(ctx, vault.CheckOptions{Mode: mode})
	if err != nil {
		err = fmt.Errorf("vault %s check: %w", where, err)
		if ctx.Err() != nil {
			return err // interrupted: not a failure of the vault
		}
		ev.Error = err.Error()
		return errors.Join(err, publishVaultChecked(ctx, url, nopts, ev, stdout))
	}
	ev.RecoveryPoints, ev.Chunks = int64(rep.Manifests), int64(rep.Chunks)
	fmt.Fprintf(stdout, "vault %s, %s check: %d recovery points, %d chunks", ev.Vault, mode, rep.Manifests, rep.Chunks)
	if mode == vault.CheckFull {
		fmt.Fprintf(stdout, ", %s read and authenticated", humanBytes(rep.BytesRead))
	}
	fmt.Fprintln(stdout)
	if rep.Unreferenced > 0 {
		fmt.Fprintf(stdout, "%d chunks no recovery point needs (garbage collection removes them)\n", rep.Unreferenced)
	}
	if rep.OK() {
		fmt.Fprintln(stdout, "no damage found")
		ev.Passed = true
		return publishVaultChecked(ctx, url, nopts, ev, stdout)
	}
	fmt.Fprintf(stdout, "\nDAMAGE\n")
	for _, d := range rep.Damaged {
		what := "chunk " + d.Chunk
		if d.Chunk == "" {
			what = "manifest " + d.Manifest
		}
		line := fmt.Sprintf("%s: %s (needed by %s)", what, d.Problem, strings.Join(d.Manifests, ", "))
		ev.Damage = append(ev.Damage, line)
		fmt.Fprintf(stdout, "  %s\n", line)
	}
	affected := rep.Affected()
	fmt.Fprintf(stdout, "\nrecovery points that cannot be restored:\n")
	for _, id := range affected {
		name := "(its manifest is unreadable)"
		if m, err := v.GetManifest(ctx, id); err == nil {
			if rp, err := committer.RecoveryPointOf(m); err == nil {
				kind := "backup"
				if pt, err := policy.PointFromRecord(rp); err == nil {
					kind = pt.Kind.String()
				}
				name = fmt.Sprintf("%s/%s, %s taken %s", rp.GetDatabase().GetInstance(), rp.GetDatabase().GetDatabase(),
					kind, m.CreatedAt.Local().Format("2006-01-02 15:04:05"))
			}
		}
		ev.Affected = append(ev.Affected, fmt.Sprintf("%s %s", id, name))
		fmt.Fprintf(stdout, "  %s  %s\n", id, name)
	}
	fmt.Fprintln(stdout, "\nlater points whose chains pass through them cannot be restored either (coffer rp list shows each chain)")
	return errors.Join(fmt.Errorf("vault %s is damaged: %d recovery points affected", where, len(affected)),
		publishVaultChecked(ctx, url, nopts, ev, stdout))
}

// publishVaultChecked publishes the check's result on NATS at url for the
// alerter, or says it does not when the command was given no NATS.
func publishVaultChecked(ctx context.Context, url string, opts []nats.Option, ev *cofferv1.VaultChecked, stdout io.Writer) error {
	if url == "" {
		fmt.Fprintln(stdout, "not published: no NATS given (--nats, COFFER_NATS_URL), so the alerter raises no alert for this check")
		return nil
	}
	now := time.Now()
	ev.Meta = event.Meta(event.ID("vault-checked", ev.Vault, now.UTC().Format(time.RFC3339Nano)), "", now)
	nc, err := daemon.ConnectNATS(url, "coffer-"+topology.VaultCheck, opts...)
	if err != nil {
		return fmt.Errorf("the check's result was not published for the alerter: %w", err)
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Publish(pctx, cofferv1.SubjectVaultChecked, ev, ev.GetMeta().GetEventId()); err != nil {
		return fmt.Errorf("the check's result was not published for the alerter: %w", err)
	}
	fmt.Fprintf(stdout, "published on NATS %s for the alerter\n", url)
	return nil
}

// runVaultRekey runs `coffer vault rekey`: every vault key is wrapped
// anew with the new master key, which opens the vault from then on; the
// current one no longer does. No data is rewritten. Run again after a
// failure, it finishes the rekey.
func runVaultRekey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	next := daemon.KeySource{Name: "new master key", Env: "COFFER_NEW_MASTER_KEY", Flag: "new-master-key"}
	c, err := parseVaultFlags("rekey", args, getenv, stderr, func(f *daemon.Flags) {
		f.String(&next.File, "new-master-key-file", "COFFER_NEW_MASTER_KEY_FILE", "",
			"file holding the new master key, unless COFFER_NEW_MASTER_KEY holds the key itself")
		f.String(&next.Command, "new-master-key-command", "COFFER_NEW_MASTER_KEY_COMMAND", "",
			"command, run by /bin/sh, that prints the new master key; instead of COFFER_NEW_MASTER_KEY or a key file")
		next.Key = f.Getenv("COFFER_NEW_MASTER_KEY")
	})
	if err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	newKey, err := next.Read()
	if err != nil {
		return err
	}
	store, key, err := c.openStore(true, stdout)
	if err != nil {
		return err
	}
	n, err := vault.Rekey(ctx, store, key, newKey)
	if errors.Is(err, vault.ErrWrongKey) {
		return fmt.Errorf("the current master key does not open this vault (%w)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vault %s: its %d vault keys are now wrapped by the new master key; the old master key no longer opens it\n", vaultWhere(c.store()), n)
	if c.common.HasMasterKey() {
		fmt.Fprintln(stdout, "give every coffer process the new master key before it next starts")
	} else {
		fmt.Fprintf(stdout, "put the new master key in %s, where coffer up reads it, before it next starts\n", filepath.Join(c.dataDir, "master.key"))
	}
	fmt.Fprintln(stdout, "the connection strings of registered instances are sealed with the master key too and were not changed: once coffer runs with the new key, register each instance again (coffer instance add NAME --dsn ...)")
	return nil
}

// runKeyRotate runs `coffer vault key rotate`: a new vault key seals new
// chunks and manifests from now on; what older keys sealed stays
// readable, and nothing is rewritten.
func runKeyRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseVaultFlags("key rotate", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	v, key, err := c.openVault(ctx, stdout)
	if err != nil {
		return err
	}
	id, err := v.AddKey(ctx, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vault %s: added vault key %s; it seals new chunks and manifests, and what older keys sealed stays readable\n", vaultWhere(c.store()), id)
	fmt.Fprintln(stdout, "coffer processes running now seal with it once they restart or first read what it sealed")
	return nil
}

// vaultRebuild runs `coffer vault rebuild`: the committer, which owns the
// recovery points and reads the vault, records every recovery point the
// vault's manifests hold that the catalog lacks and has the policies of
// the vault's copy put back, and the command follows the job to its end
// and prints what it did. It fails when a manifest could not be read,
// naming it; everything else is put back anyway.
func (c *cli) vaultRebuild(ctx context.Context, pos []string, prune bool) error {
	if len(pos) != 1 || pos[0] != "rebuild" {
		return errors.New("usage: coffer vault rebuild [--prune]")
	}
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/catalog/rebuild", gateway.RebuildRequest{Prune: prune}, &acc); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "job %s: rebuilding the catalog from the vault\n", acc.JobID)
	}
	j, err := c.api.waitJob(ctx, acc.JobID, c.poll, nil)
	if err != nil {
		return err
	}
	if c.json {
		if err := c.printJSON(j); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(c.stdout, j.Detail)
		fmt.Fprintln(c.stdout, "instances and protections are not in the vault: register the instances again (coffer instance add), then protect the databases as before")
	}
	if j.State == "failed" {
		return fmt.Errorf("job %s failed: %s", j.ID, j.Error)
	}
	return nil
}

// vaultSecret reads the S3 secret key of a named vault: from file, or
// COFFER_VAULT_S3_SECRET_KEY, never from a flag, which process listings
// show.
func vaultSecret(getenv func(string) string, file string) (string, error) {
	env := getenv("COFFER_VAULT_S3_SECRET_KEY")
	switch {
	case file != "" && env != "":
		return "", errors.New("give the S3 secret key in COFFER_VAULT_S3_SECRET_KEY or in --s3-secret-key-file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read the S3 secret key: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return env, nil
}

// vaultCreate runs `coffer vault create NAME`: the committer creates the
// vault in its store (or opens the one there with the master key) and
// records it; the command follows the job to its end.
func (c *cli) vaultCreate(ctx context.Context, pos []string, req gateway.VaultRequest) error {
	if len(pos) != 1 {
		return errors.New("usage: coffer vault create NAME --dir DIR | --s3-endpoint HOST:PORT --s3-bucket B [--s3-prefix P] [--s3-access-key K]")
	}
	req.Name = pos[0]
	if err := daemon.ValidateVaultName(req.Name); err != nil {
		return err
	}
	if req.Dir != "" {
		// the committer resolves it, maybe elsewhere: send it absolute
		abs, err := filepath.Abs(req.Dir)
		if err != nil {
			return err
		}
		req.Dir = abs
	}
	var acc gateway.Accepted
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/vaults", req, &acc); err != nil {
		return err
	}
	j, err := c.api.waitJob(ctx, acc.JobID, c.poll, nil)
	if err != nil {
		return err
	}
	if j.State == "failed" {
		return fmt.Errorf("vault %s not created: %s", req.Name, j.Error)
	}
	if c.json {
		return c.printJSON(j)
	}
	fmt.Fprintf(c.stdout, "vault %s created; protect databases into it with coffer protect INSTANCE/DATABASE --vault %s\n", req.Name, req.Name)
	return nil
}

// vaultList runs `coffer vault list`.
func (c *cli) vaultList(ctx context.Context, pos []string) error {
	if len(pos) != 0 {
		return errors.New("usage: coffer vault list")
	}
	var out []gateway.Vault
	if err := c.api.do(ctx, http.MethodGet, "/api/v1/vaults", nil, &out); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(out)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTORE\tCREATED")
	for _, v := range out {
		where := ""
		switch {
		case v.Default:
			where = "(where coffer is configured: --vault-dir or --s3-*)"
		default:
			where = namedWhere(v.Dir, v.S3Endpoint, v.S3Bucket, v.S3Prefix)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, where, fmtTime(v.CreatedAt))
	}
	return tw.Flush()
}

// openNamedVault opens the vault called name, as the default vault def's
// copy of the vaults bucket records it, and says where it is.
func openNamedVault(ctx context.Context, def *vault.Vault, key []byte, name string) (*vault.Vault, string, error) {
	recs, err := daemon.VaultRecordsIn(ctx, def)
	if err != nil {
		return nil, "", err
	}
	for _, r := range recs {
		if r.GetName() != name {
			continue
		}
		v, err := daemon.OpenNamed(ctx, r, key)
		if err != nil {
			return nil, "", err
		}
		return v, name + " (" + namedWhere(r.GetDir(), r.GetS3Endpoint(), r.GetS3Bucket(), r.GetS3Prefix()) + ")", nil
	}
	return nil, "", fmt.Errorf("vault %s: %w (coffer vault list names the vaults)", name, daemon.ErrUnknownVault)
}

// namedWhere says where a named vault is: its directory, or its bucket.
func namedWhere(dir, endpoint, bucket, prefix string) string {
	if dir != "" {
		return dir
	}
	where := "s3://" + endpoint + "/" + bucket
	if prefix != "" {
		where += "/" + prefix
	}
	return where
}
