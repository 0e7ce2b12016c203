// Command coffer is coffer's command-line client, and runs its services.
//
//	coffer sim    serve a simulated SQL Server instance (see docs/mssqlsim.md)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "coffer:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: coffer <command> [arguments] [flags]

Run coffer:
  up [--demo] [--data DIR] [--http ADDR]   every service in one process, with an embedded NATS and a local vault
     [--services S,...] [--nats URL]       only these services; an external NATS (up -help: every setting)
  sim --addr ADDR --sa-password PW [--demo] a simulated SQL Server 2022 instance
  ca init [--dir DIR] [--copy-to FILE]     create coffer's CA (URL mode) if absent; print its certificate's path
  nats config --dir DIR [--tls-hosts H,...] one NATS user per service: credentials into DIR, nats-server config on stdout
  s3 policy --bucket B [--prefix P]        the S3 policy of a user that may use the vault's bucket and nothing else

Talk to a running coffer (--api URL or COFFER_API; --json for scripts):
  instance add NAME --dsn DSN [--mode auto|url|disk] | list | discover NAME | check NAME | autoprotect NAME --on|--off
                                 add and check: can SQL Server back up to the streamer (URL mode)? if not, what to fix
  db list [INSTANCE]
  protect INSTANCE/DATABASE|PATTERN... [--policy P] [--vault NAME]   unprotect INSTANCE/DATABASE... [--delete-data]
                                 a pattern protects every database it matches: 'sql1/*', '*/Sales' (quote it)
                                 --vault: the named vault the backups go to (default: the default vault)
                                 --delete-data: delete every recovery point too (soft delete, as rp delete)
  backup INSTANCE/DATABASE [--type full|copy_only|differential|log] [--wait]
  rp list INSTANCE/DATABASE      recovery points, then the moments they can restore
  rp ranges INSTANCE/DATABASE    the moments alone
  rp list INSTANCE/DATABASE --deleted            the deleted points too, with when they can no longer be undeleted
  rp delete ID... [--with-dependents]            soft delete: hidden, restorable by undelete for the soft-delete
                                 window (default 14 days), then collected; refused when kept points need them,
                                 unless --with-dependents deletes those too
  rp undelete ID...              bring deleted points back (with the deleted points they need), within the window
  restore INSTANCE/DATABASE (--latest | --point ID | --time MOMENT [--tz ZONE] | --mark NAME [--before-mark])
          (--as NAME [--target INSTANCE] [--overwrite] [--data-path DIR] [--log-path DIR] | --to-dir DIR [--as NAME])
          [--norecovery] [--dry-run] [--wait]
  verify INSTANCE/DATABASE [--on INSTANCE] [--wait]
                                 test restores (latest and a random moment), DBCC CHECKDB, dropped
  jobs [list] | jobs show ID | jobs wait ID
  policy list | show NAME | set NAME --file FILE.json | delete NAME
  vault check [--full] [--vault default|NAME]
                                 every recovery point's chunks exist (--full: and authenticate), in every vault
                                 (the default, then each named one); --vault: that vault alone
  vault create NAME (--dir DIR | --s3-endpoint HOST:PORT --s3-bucket B [--s3-prefix P] [--s3-access-key K] [--s3-ca-file F]
                    [--object-lock governance|compliance])
                                 a named vault, another place for backups (its S3 secret: COFFER_VAULT_S3_SECRET_KEY
                                 or --s3-secret-key-file); names are 2 to 50 letters, digits and hyphens;
                                 --object-lock: immutable, as vault create --object-lock below
  vault list                     the default vault and the named ones
  vault create [--object-lock governance|compliance]
                                 create the vault (coffer up does at its first start); immutable with S3 Object Lock
  vault recover                  immutable vault: bring back deleted locked objects, list unlisted packs again
  vault rebuild [--prune]        put back in the catalog every recovery point and policy the vault holds that it lacks
                                 (after the catalog was lost); --prune: delete records the vault has no manifest for
  vault rekey --new-master-key-file FILE
                                 wrap the vault's keys with a new master key (the old one stops opening it)
  vault key rotate               a new vault key seals new data; older data stays readable
  user add NAME --role viewer|operator|admin [--password-stdin] [--with-token] | list | delete NAME | token NAME
       | revoke NAME TOKEN-ID
                                 users of the API and dashboard; a token is printed once (docs/api.md)
  audit [--since 24h] [--user NAME] [--limit N]  who changed what, when, from where, and the outcome

A database is named INSTANCE/DATABASE; the first '/' splits, so the
database part may itself contain '/'.
`

// run dispatches a subcommand; it is main without the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "sim":
		return runSim(ctx, args[1:], stdout, stderr)
	case "up":
		return runUp(ctx, args[1:], os.Getenv, stdout, stderr)
	case "vault":
		return runVault(ctx, args[1:], os.Getenv, stdout, stderr)
	case "ca":
		return runCA(args[1:], os.Getenv, stdout, stderr)
	case "nats":
		return runNATS(args[1:], os.Getenv, stdout, stderr)
	case "s3":
		return runS3(args[1:], os.Getenv, stdout, stderr)
	case "instance", "db", "protect", "unprotect", "backup", "rp", "restore", "verify", "jobs", "policy", "user", "audit":
		return runClient(ctx, args[0], args[1:], os.Getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
