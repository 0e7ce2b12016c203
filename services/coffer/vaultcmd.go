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
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// vaultOpens is what the help of the commands that open the vault
// themselves says of where.
const vaultOpens = `It opens the vault where coffer up keeps it: the same --data,
COFFER_VAULT_DIR or COFFER_S3_* settings and master key.`

// vaultCmd is coffer vault: the commands that open the vault themselves
// (check, create, recover, rekey, key rotate; their flags are those of
// coffer up that say where it is), and those that ask the API (list,
// rebuild, create NAME).
func (a *app) vaultCmd() *cobra.Command {
	local := func(run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error) func(context.Context, []string, io.Writer) error {
		return func(ctx context.Context, args []string, flagOut io.Writer) error {
			return run(ctx, args, a.getenv, a.stdout, flagOut)
		}
	}
	check := a.passthrough(&cobra.Command{
		Use:   "check",
		Short: "Check that every recovery point's chunks exist, or also authenticate (--full)",
		Long: `Check that every recovery point's chunks exist (fast), or also read and
authenticate them (--full), in every vault: the default, then each named
one (--vault default|NAME: that vault alone). Damage makes it fail (exit
code 1), naming the vault and the recovery points it affects; so does a
named vault that cannot be opened, after the others are checked. Given
NATS (--nats), it publishes each vault's result for the alerter.

` + vaultOpens,
		Example: "  coffer vault check --full\n  coffer vault check --vault offsite",
	}, local(runVaultCheck))
	recover := a.passthrough(&cobra.Command{
		Use:   "recover",
		Short: "Immutable vault: bring back deleted locked objects, list unlisted packs again",
		Long: `In an immutable vault, bring back the locked objects someone deleted and
list again the packs no index lists. Run it with coffer stopped.

` + vaultOpens,
	}, local(runVaultRecover))
	rekey := a.passthrough(&cobra.Command{
		Use:   "rekey",
		Short: "Wrap the vault's keys with a new master key",
		Long: `Wrap every vault key anew with the new master key, which opens the vault
from then on; the current one no longer does. No data is rewritten. Run
again after a failure, it finishes the rekey.

` + vaultOpens,
		Example: "  coffer vault rekey --new-master-key-file /secure/new.key",
	}, local(runVaultRekey))
	rotate := a.passthrough(&cobra.Command{
		Use:   "rotate",
		Short: "Seal new data with a new vault key; older data stays readable",
		Long:  "A new vault key seals new chunks and manifests from now on; what older keys sealed stays readable, and nothing is rewritten.\n\n" + vaultOpens,
	}, local(runKeyRotate))

	rebuild := &cobra.Command{
		Use:   "rebuild",
		Short: "Put back in the catalog every recovery point and policy the vault holds that it lacks",
		Long: `After the catalog was lost, put back in the catalog every recovery point
and policy the vault holds that it lacks. --prune also deletes the records
the vault has no manifest for.`,
		Args: nargs(0, 0),
	}
	prune := rebuild.Flags().Bool("prune", false, "also delete the recovery points the catalog records whose manifest is not in the vault")
	a.client(rebuild, func(ctx context.Context, c *cli, _ []string) error { return c.vaultRebuild(ctx, *prune) })

	list := a.leaf("list", "List the default vault and the named ones", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.vaultList(ctx) })

	return group("vault", "Check, create, list, recover, rebuild and rekey vaults", "",
		check, a.vaultCreateCmd(), list, recover, rebuild, rekey, group("key", "Manage the vault's keys", "", rotate))
}

// vaultCreateCmd is coffer vault create, which is two commands: with a
// NAME, a named vault the committer creates (through the API); without,
// the default vault, which the command creates itself.
func (a *app) vaultCreateCmd() *cobra.Command {
	named := pflag.NewFlagSet("coffer vault create NAME", pflag.ContinueOnError)
	named.SetOutput(io.Discard)
	var vr gateway.VaultRequest
	named.StringVar(&vr.Dir, "dir", "", "the directory of a directory vault, which the committer and the streamers reach")
	named.StringVar(&vr.S3Endpoint, "s3-endpoint", "", "host:port of the S3-compatible store of an S3 vault")
	named.StringVar(&vr.S3Bucket, "s3-bucket", "", "the S3 vault's bucket (created if absent)")
	named.StringVar(&vr.S3Prefix, "s3-prefix", "", "the S3 vault's prefix in the bucket")
	named.StringVar(&vr.S3AccessKey, "s3-access-key", "", "the store's access key; its secret is COFFER_VAULT_S3_SECRET_KEY, or in --s3-secret-key-file")
	secretFile := named.String("s3-secret-key-file", "", "file holding the store's secret key")
	caFile := named.String("s3-ca-file", "", "PEM file of the CAs the store's certificate is checked against (default the system's); the vault's record keeps them")
	named.BoolVar(&vr.S3InsecureHTTP, "s3-insecure-http", false, "talk to the store over plain HTTP")
	named.StringVar(&vr.ObjectLock, "object-lock", "", "make the S3 vault immutable with S3 Object Lock, in governance or compliance mode")
	cf := a.addClientFlags(named)
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create a named vault, or the default vault",
		Long: `coffer vault create NAME (--dir DIR | --s3-endpoint HOST:PORT --s3-bucket B ...)
creates a named vault, another place for backups (coffer protect --vault
NAME): the committer creates it in its store, or opens the one there with
the master key, and records it. Names are 2 to 50 letters, digits and
hyphens. Its S3 secret key is in COFFER_VAULT_S3_SECRET_KEY or
--s3-secret-key-file, never a flag. --object-lock makes it immutable, as
below.

coffer vault create [--object-lock governance|compliance] creates the
default vault, which coffer up otherwise does at its first start; with
--object-lock it is immutable (S3 Object Lock). Without NAME, its flags
are those of coffer up that say where the vault is.

` + vaultOpens,
		Example: `  coffer vault create offsite --s3-endpoint s3.example.com:443 --s3-bucket coffer-offsite --s3-access-key AK
  coffer vault create --object-lock governance --s3-endpoint minio:9000 --s3-bucket coffer-vault`,
	}
	return a.passthrough(cmd, func(ctx context.Context, args []string, flagOut io.Writer) error {
		if wantsHelp(args) {
			fmt.Fprintf(flagOut, "Flags of coffer vault create NAME (a named vault):\n%s\nFlags of coffer vault create (the default vault):\n", named.FlagUsages())
		}
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return runVaultCreate(ctx, args, a.getenv, a.stdout, flagOut)
		}
		if err := named.Parse(args); err != nil {
			fmt.Fprint(flagOut, named.FlagUsages())
			return usagef("vault create NAME: %w", err)
		}
		if named.NArg() != 1 {
			return usagef("unexpected argument %q\nusage: coffer vault create NAME (--dir DIR | --s3-endpoint HOST:PORT --s3-bucket B [--s3-prefix P] [--s3-access-key K])", named.Arg(1))
		}
		c, err := a.newCLI(cf)
		if err != nil {
			return err
		}
		if vr.S3SecretKey, err = vaultSecret(a.getenv, *secretFile); err != nil {
			return &usageError{err}
		}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return usagef("read the S3 CA file: %w", err)
			}
			vr.S3CAPEM = string(pem)
		}
		return c.vaultCreate(ctx, named.Arg(0), vr)
	})
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
		return nil, &usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := errors.Join(f.Err(), c.common.Validate()); err != nil {
		return nil, &usageError{err}
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
func (c *cli) vaultRebuild(ctx context.Context, prune bool) error {
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
	if err := jobOutcome(j); err != nil {
		return err
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
func (c *cli) vaultCreate(ctx context.Context, name string, req gateway.VaultRequest) error {
	req.Name = name
	if err := daemon.ValidateVaultName(req.Name); err != nil {
		return &usageError{err}
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
func (c *cli) vaultList(ctx context.Context) error {
	var out []gateway.Vault
	if done, err := c.get(ctx, "/api/v1/vaults", &out); done {
		return err
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
