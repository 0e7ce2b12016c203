package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/services/gateway"
)

// The commands that talk to a running coffer through its API.

// database accepts one argument that names a database,
// INSTANCE/DATABASE.
func database(c *cobra.Command, args []string) error {
	if err := nargs(1, 1)(c, args); err != nil {
		return err
	}
	if _, _, err := splitDB(args[0]); err != nil {
		return &usageError{err}
	}
	return nil
}

// mustSplitDB splits a name database has accepted.
func mustSplitDB(s string) (instance, database string) {
	instance, database, _ = splitDB(s)
	return instance, database
}

func (a *app) instanceCmd() *cobra.Command {
	add := &cobra.Command{
		Use:   "add NAME --dsn DSN",
		Short: "Register a SQL Server instance, then check it can back up",
		Long: `Register a SQL Server instance under NAME. Discovery then lists its
databases (coffer db list NAME). The command waits for the registration to
be recorded and runs the same check as coffer instance check: can SQL
Server back up to the streamer (URL mode)? If not, it prints what to fix.`,
		Example: `  coffer instance add sql1 --dsn 'sqlserver://coffer:secret@sql1.example.com:1433'
  coffer instance add legacy --dsn 'sqlserver://coffer:secret@old:1433' --mode disk`,
		Args: nargs(1, 1),
	}
	dsn := add.Flags().String("dsn", "", "connection string, e.g. sqlserver://user:password@host:1433")
	mode := add.Flags().String("mode", "auto", "how backups leave the instance: auto (no staging for SQL Server 2022+ when coffer serves its S3 endpoint), url or disk")
	add.MarkFlagRequired("dsn")
	a.client(add, func(ctx context.Context, c *cli, args []string) error {
		return c.instanceAdd(ctx, args[0], *dsn, *mode)
	})

	list := a.leaf("list", "List the registered instances and their health", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.instanceList(ctx) })

	discover := a.leaf("discover NAME", "List an instance's databases again now", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.instanceDiscover(ctx, args[0]) })

	check := a.client(&cobra.Command{
		Use:   "check NAME",
		Short: "Check that SQL Server can back up to the streamer (URL mode)",
		Long: `Check that the instance can back up: in URL mode, that SQL Server reaches
and trusts the streamer's S3 endpoint. A problem is printed with its fix,
and the command fails (exit code 1).`,
		Args: nargs(1, 1),
	}, func(ctx context.Context, c *cli, args []string) error { return c.instanceCheck(ctx, args[0]) })

	auto := &cobra.Command{
		Use:   "autoprotect NAME --on|--off",
		Short: "Turn auto-protection of an instance's new databases on or off",
		Long: `Turn auto-protection on or off: with it on, every database discovery
finds on the instance is protected with the policy given (default: the
default policy).`,
		Example: "  coffer instance autoprotect sql1 --on --policy hourly",
		Args:    nargs(1, 1),
	}
	on := auto.Flags().Bool("on", false, "turn auto-protection on")
	off := auto.Flags().Bool("off", false, "turn auto-protection off")
	autoPolicy := auto.Flags().String("policy", "", "policy for auto-protection (default: the default policy)")
	auto.MarkFlagsMutuallyExclusive("on", "off")
	auto.MarkFlagsOneRequired("on", "off")
	a.client(auto, func(ctx context.Context, c *cli, args []string) error {
		return c.instanceAutoprotect(ctx, args[0], *on && !*off, *autoPolicy)
	})

	return group("instance", "Register, list and check SQL Server instances", "", add, list, discover, check, auto)
}

func (a *app) dbCmd() *cobra.Command {
	list := a.leaf("list [INSTANCE]", "List the databases discovery found, and their protection", nargs(0, 1), func(ctx context.Context, c *cli, args []string) error {
		instance := ""
		if len(args) == 1 {
			instance = args[0]
		}
		return c.dbList(ctx, instance)
	})
	return group("db", "List databases", "", list)
}

func (a *app) protectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "protect INSTANCE/DATABASE|PATTERN...",
		Short: "Protect databases: back them up on a policy's schedule",
		Long: `Protect databases: the scheduler backs them up on the policy's schedule,
starting with a full backup. A pattern protects every database it
matches: 'sql1/*', '*/Sales' (quote it from the shell).`,
		Example: `  coffer protect sql1/Sales
  coffer protect 'sql1/*' --policy hourly --vault offsite`,
		Args: nargs(1, -1),
	}
	policy := cmd.Flags().String("policy", "", "backup policy (default: the default policy)")
	vault := cmd.Flags().String("vault", "", "the vault the backups go to (coffer vault list; default: the default vault)")
	return a.client(cmd, func(ctx context.Context, c *cli, args []string) error {
		return c.protect(ctx, true, args, *policy, *vault, false)
	})
}

func (a *app) unprotectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unprotect INSTANCE/DATABASE...",
		Short: "Stop protecting databases",
		Long: `Stop protecting databases: no more backups are scheduled. Their recovery
points stay, unless --delete-data deletes them too (a soft delete, as
coffer rp delete: coffer rp undelete brings them back within the
soft-delete window).`,
		Args: nargs(1, -1),
	}
	deleteData := cmd.Flags().Bool("delete-data", false, "delete every recovery point of the database too (a soft delete)")
	return a.client(cmd, func(ctx context.Context, c *cli, args []string) error {
		return c.protect(ctx, false, args, "", "", *deleteData)
	})
}

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "backup INSTANCE/DATABASE",
		Short:   "Back up a database now",
		Example: "  coffer backup sql1/Sales --type log --wait",
		Args:    database,
	}
	typ := cmd.Flags().String("type", "full", "full, copy_only, differential or log")
	wait := cmd.Flags().Bool("wait", false, "follow the job to its end")
	return a.client(cmd, func(ctx context.Context, c *cli, args []string) error {
		inst, db := mustSplitDB(args[0])
		return c.backup(ctx, inst, db, *typ, *wait)
	})
}

func (a *app) rpCmd() *cobra.Command {
	list := &cobra.Command{
		Use:   "list INSTANCE/DATABASE",
		Short: "List a database's recovery points, then the moments they can restore",
		Args:  database,
	}
	deleted := list.Flags().Bool("deleted", false, "show deleted recovery points too, with when they can no longer be undeleted")
	a.client(list, func(ctx context.Context, c *cli, args []string) error {
		inst, db := mustSplitDB(args[0])
		return c.rpList(ctx, inst, db, *deleted)
	})

	ranges := a.leaf("ranges INSTANCE/DATABASE", "List the moments a database can be restored to", database, func(ctx context.Context, c *cli, args []string) error {
		inst, db := mustSplitDB(args[0])
		return c.printRanges(ctx, inst, db)
	})

	del := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete recovery points (a soft delete)",
		Long: `Delete recovery points: a soft delete. They are hidden, restorable by
coffer rp undelete for the soft-delete window (default 14 days), then
collected. Refused when kept points need them, unless --with-dependents
deletes those too.`,
		Args: nargs(1, -1),
	}
	withDeps := del.Flags().Bool("with-dependents", false, "delete too the points that cannot be restored without those named")
	a.client(del, func(ctx context.Context, c *cli, args []string) error { return c.rpChange(ctx, true, args, *withDeps) })

	undelete := a.client(&cobra.Command{
		Use:   "undelete ID...",
		Short: "Bring deleted recovery points back, within the soft-delete window",
		Long:  "Bring deleted recovery points back, with the deleted points they need, within the soft-delete window.",
		Args:  nargs(1, -1),
	}, func(ctx context.Context, c *cli, args []string) error { return c.rpChange(ctx, false, args, false) })

	return group("rp", "List, delete and undelete recovery points", "", list, ranges, del, undelete)
}

func (a *app) restoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore INSTANCE/DATABASE (--latest | --point ID | --time MOMENT | --mark NAME) (--as NAME | --to-dir DIR)",
		Short: "Restore a database to a moment",
		Long: `Restore a database to one moment: the latest its backups reach (--latest),
the end of a recovery point (--point), any moment (--time), or a marked
transaction (--mark). It restores into a database (--as, on --target or
the source's instance), or as files: the backup files and restore.sql in
a directory (--to-dir). --dry-run prints the plan and stops.`,
		Example: `  coffer restore sql1/Sales --time "2026-11-21 10:15:03" --tz Europe/Paris --as Sales_1015 --wait
  coffer restore sql1/Sales --latest --as Sales --overwrite --target sql2
  coffer restore sql1/Sales --point 01JD... --to-dir /restores/sales --dry-run`,
		Args: database,
	}
	fs := cmd.Flags()
	var req gateway.RestoreRequest
	fs.BoolVar(&req.Latest, "latest", false, "restore to the latest moment the backups reach")
	fs.StringVar(&req.Point, "point", "", "restore to the end of a recovery point (coffer rp list)")
	at := fs.String("time", "", `restore to a moment: "2026-11-21 10:15:03" (in --tz) or RFC 3339 with an offset`)
	tz := fs.String("tz", "", "time zone of --time, e.g. Europe/Paris (default: this machine's)")
	fs.StringVar(&req.Mark, "mark", "", "restore to the latest transaction marked so (BEGIN TRAN ... WITH MARK), including it")
	fs.BoolVar(&req.BeforeMark, "before-mark", false, "with --mark: stop just before the marked transaction")
	fs.StringVar(&req.TargetDatabase, "as", "", "name of the database to restore into")
	fs.StringVar(&req.TargetInstance, "target", "", "instance to restore to (default: the source's)")
	fs.BoolVar(&req.Overwrite, "overwrite", false, "replace the target database if it exists")
	fs.BoolVar(&req.NoRecovery, "norecovery", false, "leave the database RESTORING, ready for more logs")
	fs.StringVar(&req.DataPath, "data-path", "", "directory for the data files on the target (default: the instance's default data path)")
	fs.StringVar(&req.LogPath, "log-path", "", "directory for the log files on the target (default: the instance's default log path)")
	fs.BoolVar(&req.DryRun, "dry-run", false, "print the plan and stop")
	fs.StringVar(&req.FromVault, "from-vault", "", "read every recovery point from this vault, its own or one holding its copy (default: its own, then a copy when it cannot be read)")
	fs.StringVar(&req.ToDirectory, "to-dir", "", "restore as files: write the backup files and restore.sql into this absolute directory (on the backup-streamer's machine)")
	wait := fs.Bool("wait", false, "follow the job to its end")
	cmd.MarkFlagsMutuallyExclusive("latest", "point", "time", "mark")
	cmd.MarkFlagsOneRequired("latest", "point", "time", "mark")
	cmd.MarkFlagsOneRequired("as", "to-dir")
	return a.client(cmd, func(ctx context.Context, c *cli, args []string) error {
		if *tz != "" && *at == "" {
			return usagef("--tz is the zone of --time: give --time too")
		}
		if req.BeforeMark && req.Mark == "" {
			return usagef("--before-mark goes with --mark")
		}
		if *at != "" {
			t, err := parseMoment(*at, *tz)
			if err != nil {
				return &usageError{err}
			}
			req.Time = &t
		}
		req.Instance, req.Database = mustSplitDB(args[0])
		return c.restore(ctx, req, *wait)
	})
}

func (a *app) verifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify INSTANCE/DATABASE",
		Short: "Test-restore a database now",
		Long: `Test-restore a database now: its latest moment and a random one, each
checked with DBCC CHECKDB, then dropped. The result is recorded on the
recovery points (coffer rp list).`,
		Args: database,
	}
	on := cmd.Flags().String("on", "", "instance to run the test restores on (default: the database's own)")
	wait := cmd.Flags().Bool("wait", false, "follow the job to its end")
	return a.client(cmd, func(ctx context.Context, c *cli, args []string) error {
		inst, db := mustSplitDB(args[0])
		return c.verify(ctx, inst, db, *on, *wait)
	})
}

func (a *app) jobsCmd() *cobra.Command {
	jobs := a.leaf("jobs", "List jobs: backups, restores, verifications and the rest", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.jobsList(ctx) })
	jobs.AddCommand(
		a.leaf("list", "List jobs (as coffer jobs)", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.jobsList(ctx) }),
		a.leaf("show ID", "Show a job", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.jobShow(ctx, args[0]) }),
		a.leaf("wait ID", "Follow a job to its end; fail if it failed or was cancelled", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error {
			return c.follow(ctx, gateway.Accepted{JobID: args[0]}, true)
		}),
		a.leaf("cancel ID", "Cancel a queued or running backup, restore, test restore or copy", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error {
			return c.jobCancel(ctx, args[0])
		}),
	)
	return jobs
}

func (a *app) policyCmd() *cobra.Command {
	set := &cobra.Command{
		Use:   "set NAME --file FILE.json",
		Short: "Create or replace a policy",
		Long: `Create or replace a policy from a JSON file (- for standard input). It
takes effect at each database's next due time. coffer policy show default
prints one to start from.`,
		Example: "  coffer policy show default > hourly.json && $EDITOR hourly.json && coffer policy set hourly --file hourly.json",
		Args:    nargs(1, 1),
	}
	file := set.Flags().String("file", "", "JSON file of the policy; - for standard input")
	set.MarkFlagRequired("file")
	a.client(set, func(ctx context.Context, c *cli, args []string) error { return c.policySet(ctx, args[0], *file) })
	return group("policy", "List, show, set and delete backup policies", "",
		a.leaf("list", "List the policies", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.policyList(ctx) }),
		a.leaf("show NAME", "Print a policy as JSON", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.policyShow(ctx, args[0]) }),
		set,
		a.leaf("delete NAME", "Delete a policy", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.policyDelete(ctx, args[0]) }),
	)
}
