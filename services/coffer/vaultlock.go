package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/vault"
)

// openStore opens the vault's store, its calls tried again, and finds
// the master key (unless mustExist, a new one if there is none: see
// masterKey).
func (c *upConfig) openStore(mustExist bool, stdout io.Writer) (blob.Store, []byte, error) {
	store, err := c.store().Open()
	if err != nil {
		return nil, nil, err
	}
	key, err := c.masterKey(mustExist, stdout)
	if err != nil {
		return nil, nil, err
	}
	return store, key, nil
}

// runVaultCreate runs `coffer vault create`: it creates the vault where
// `coffer up` would (which otherwise happens at its first start), and
// with --object-lock makes it immutable: the bucket is created with S3
// Object Lock if it does not exist (an existing one must have it), and
// the vault's config records the mode, so that every committer locks
// what each recovery point needs until it expires. Run on a vault that
// exists, it makes it immutable, or says it is already.
func runVaultCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var lockMode string
	c, err := parseVaultFlags("create", args, getenv, stderr, func(f *daemon.Flags) {
		f.FlagSet().StringVar(&lockMode, "object-lock", "", "make the vault immutable with S3 Object Lock, in governance or compliance mode (S3 stores only)")
	})
	if err != nil {
		return err
	}
	var mode blob.RetentionMode
	if lockMode != "" {
		if mode, err = blob.ParseRetentionMode(lockMode); err != nil {
			return err
		}
	}
	where := c.store()
	if err := where.MakeBucket(ctx, mode != ""); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return err
	}
	store, key, err := c.openStore(false, stdout)
	if err != nil {
		return err
	}
	v, err := daemon.OpenVault(ctx, store, key, false)
	created := errors.Is(err, vault.ErrNotInitialized)
	if created {
		v, err = vault.Init(ctx, store, key)
	}
	if err != nil {
		return err
	}
	was := v.ObjectLock()
	if mode != "" {
		if err := vault.EnableObjectLock(ctx, store, mode); err != nil {
			return err
		}
	}
	switch {
	case created && mode != "":
		fmt.Fprintf(stdout, "vault %s created, immutable: S3 Object Lock in %s mode\n", vaultWhere(where), strings.ToLower(string(mode)))
	case created:
		fmt.Fprintf(stdout, "vault %s created\n", vaultWhere(where))
	case mode != "" && was == "":
		fmt.Fprintf(stdout, "vault %s made immutable: S3 Object Lock in %s mode, for recovery points committed from now on\n", vaultWhere(where), strings.ToLower(string(mode)))
	case was != "":
		fmt.Fprintf(stdout, "vault %s exists, immutable in %s mode\n", vaultWhere(where), strings.ToLower(string(was)))
	default:
		fmt.Fprintf(stdout, "vault %s exists\n", vaultWhere(where))
	}
	return nil
}

// runVaultRecover runs `coffer vault recover`: in an immutable vault,
// it brings back the locked objects someone deleted (a delete only hides
// them behind a delete marker) and lists again the packs no index lists.
// Run it with coffer stopped.
func runVaultRecover(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseVaultFlags("recover", args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	store, key, err := c.openStore(true, stdout)
	if err != nil {
		return err
	}
	// Undelete first: the vault cannot open while its key records or
	// config are hidden.
	l, ok := store.(blob.Locker)
	if !ok {
		return blob.ErrUnsupported
	}
	back, err := l.Undelete(ctx, "")
	if err != nil {
		return err
	}
	v, err := daemon.OpenVault(ctx, store, key, false)
	if err != nil {
		return err
	}
	rep, err := v.Recover(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vault %s: %d deleted objects brought back, %d packs listed again\n", vaultWhere(c.store()),
		len(back)+len(rep.Undeleted), rep.Reindexed)
	return nil
}
