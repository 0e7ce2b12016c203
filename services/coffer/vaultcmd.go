package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/committer"
	"github.com/cofferhq/coffer/services/gateway"
)

// runVault runs `coffer vault check` and `coffer vault rebuild`. The check
// opens the vault where `coffer up`
// keeps it (the same --data, COFFER_VAULT_DIR or COFFER_S3_* settings and
// master key) and checks that every recovery point's chunks exist (fast)
// or also authenticate (--full). Damage makes it fail, naming the
// recovery points it affects.
func runVault(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "create" {
		return runVaultCreate(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "recover" {
		return runVaultRecover(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "rebuild" {
		return runClient(ctx, "vault", args, getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		return errors.New("usage: coffer vault check [--full] | create [--object-lock governance|compliance] | recover | rebuild [--prune] [--data DIR] [--master-key-file FILE]")
	}
	var full *bool
	c, err := parseVaultFlags("check", args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		full = fs.Bool("full", false, "read and authenticate every chunk (default: only check that every chunk exists)")
	})
	if err != nil {
		return err
	}
	store, key, err := c.openStore(true, stdout)
	if err != nil {
		return err
	}
	v, err := daemon.OpenVault(ctx, store, key, false)
	if err != nil {
		return err
	}
	mode := vault.CheckFast
	if *full {
		mode = vault.CheckFull
	}
	rep, err := v.Check(ctx, vault.CheckOptions{Mode: mode})
	if err != nil {
		return fmt.Errorf("vault check: %w", err)
	}
	fmt.Fprintf(stdout, "vault %s, %s check: %d recovery points, %d chunks", vaultWhere(c.store()), mode, rep.Manifests, rep.Chunks)
	if mode == vault.CheckFull {
		fmt.Fprintf(stdout, ", %s read and authenticated", humanBytes(rep.BytesRead))
	}
	fmt.Fprintln(stdout)
	if rep.Unreferenced > 0 {
		fmt.Fprintf(stdout, "%d chunks no recovery point needs (garbage collection removes them)\n", rep.Unreferenced)
	}
	if rep.OK() {
		fmt.Fprintln(stdout, "no damage found")
		return nil
	}
	fmt.Fprintf(stdout, "\nDAMAGE\n")
	for _, d := range rep.Damaged {
		what := "chunk " + d.Chunk
		if d.Chunk == "" {
			what = "manifest " + d.Manifest
		}
		fmt.Fprintf(stdout, "  %s: %s (needed by %s)\n", what, d.Problem, strings.Join(d.Manifests, ", "))
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
		fmt.Fprintf(stdout, "  %s  %s\n", id, name)
	}
	fmt.Fprintln(stdout, "\nlater points whose chains pass through them cannot be restored either (coffer rp list shows each chain)")
	return fmt.Errorf("the vault is damaged: %d recovery points affected", len(affected))
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
