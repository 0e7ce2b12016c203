package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of coffer, distinct so that scripts can tell why a command
// failed (docs/api.md, "Exit codes").
const (
	exitOK = 0
	// exitFailed: the operation ran and failed: a job failed, the vault
	// check found damage, the gateway refused a restore as asked.
	exitFailed = 1
	// exitUsage: the command line is wrong: an unknown command or flag,
	// missing or extra arguments, a malformed value.
	exitUsage = 2
	// exitUnreachable: the API could not be reached: connection refused,
	// TLS, timeout.
	exitUnreachable = 3
	// exitRefused: the API refused who asks: not signed in (401) or a
	// role too low (403).
	exitRefused = 4
)

// usageError is a command line coffer cannot run.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef is a usageError.
func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// unreachableError is a request that got no answer from the API.
type unreachableError struct {
	base string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the coffer API at %s (is `coffer up` running? set --api or COFFER_API): %v", e.base, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// exitCode is the exit status that says what err is.
func exitCode(err error) int {
	var usage *usageError
	var unreachable *unreachableError
	var refused *apiError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &unreachable):
		return exitUnreachable
	case errors.As(err, &refused) && (refused.status == http.StatusUnauthorized || refused.status == http.StatusForbidden):
		return exitRefused
	}
	return exitFailed
}

// app is what every command shares: the process's environment and
// streams.
type app struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// ran is true once a command's own code runs: an error before is the
	// command line's.
	ran bool
}

// execute runs the command line args, reading the environment through
// getenv: it is main without the process around it. A request for help
// is no error.
func execute(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	a := &app{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var usage *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case err != nil && !a.ran && !errors.As(err, &usage):
		return &usageError{err}
	}
	return err
}

const rootLong = `coffer backs up Microsoft SQL Server databases and restores them to any
moment. This command runs coffer (up, sim), prepares its deployment (ca,
nats, s3, vault) and talks to a running coffer through its API (--api or
COFFER_API, --token or COFFER_API_TOKEN; --json for scripts).

A database is named INSTANCE/DATABASE; the first '/' splits, so the
database part may itself contain '/'.

Exit codes:
  0  success
  1  the operation ran and failed: a job failed, the vault check found
     damage, the API refused the request as asked (such as a restore)
  2  usage error: unknown command or flag, missing or extra arguments
  3  the API could not be reached: connection refused, TLS, timeout
  4  the API refused who asks: not signed in (401) or role too low (403)`

// root is the command tree.
func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Back up SQL Server and restore it to any moment",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		// an unknown command is refused before (cobra's legacyArgs)
		RunE: func(c *cobra.Command, _ []string) error {
			c.SetOut(a.stderr)
			c.Usage()
			return usagef("no command given")
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprint(a.stderr, c.UsageString())
		return usagef("%s: %w", subPath(c), err)
	})
	root.AddGroup(&cobra.Group{ID: "run", Title: "Run coffer:"},
		&cobra.Group{ID: "api", Title: "Talk to a running coffer:"})
	for _, c := range []*cobra.Command{a.upCmd(), a.simCmd(), a.caCmd(), a.natsCmd(), a.s3Cmd(), a.vaultCmd()} {
		c.GroupID = "run"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.instanceCmd(), a.dbCmd(), a.protectCmd(), a.unprotectCmd(), a.backupCmd(),
		a.rpCmd(), a.restoreCmd(), a.verifyCmd(), a.jobsCmd(), a.policyCmd(), a.userCmd(), a.auditCmd(), a.alertsCmd()} {
		c.GroupID = "api"
		root.AddCommand(c)
	}
	root.SetHelpCommand(helpCmd())
	root.SetHelpCommandGroupID("run")
	root.SetCompletionCommandGroupID("run")
	a.markRun(root)
	return root
}

// helpCmd is coffer help: cobra's, but a command it does not know is a
// usage error.
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help provides help for any command in the application.",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var subs []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					subs = append(subs, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return subs, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err == nil && len(rest) > 0 && cmd.HasAvailableSubCommands() {
				err = fmt.Errorf("unknown command %q", rest[0])
			}
			if err != nil {
				return usagef("help %s: %w", strings.Join(args, " "), err)
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// markRun has every command record in a.ran that its own code ran.
func (a *app) markRun(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.ran = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		a.markRun(sub)
	}
}

// group is a command that holds others: run alone, or with a command it
// does not hold, it is a usage error that names those it holds.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.ArbitraryArgs}
	g.AddCommand(subs...)
	g.RunE = func(c *cobra.Command, args []string) error {
		what := "a command is needed"
		if len(args) > 0 {
			what = fmt.Sprintf("unknown command %q", args[0])
		}
		return usagef("%s: %s\nusage: %s", subPath(c), what, strings.Join(useLines(c), "\n       "))
	}
	return g
}

// subPath is c's path without the root's name, which main's "coffer:"
// says.
func subPath(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// useLines are the use lines of the commands c holds, those of a group
// it holds too.
func useLines(c *cobra.Command) []string {
	var lines []string
	for _, sub := range c.Commands() {
		switch {
		case !sub.IsAvailableCommand():
		case sub.HasAvailableSubCommands():
			lines = append(lines, useLines(sub)...)
		default:
			lines = append(lines, sub.UseLine())
		}
	}
	return lines
}

// nargs accepts from min to max positional arguments; max < 0: any
// number from min.
func nargs(minimum, maximum int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < minimum:
			return usagef("%s: missing argument\nusage: %s", subPath(c), c.UseLine())
		case maximum >= 0 && len(args) > maximum:
			return usagef("unexpected argument %q\nusage: %s", args[maximum], c.UseLine())
		}
		return nil
	}
}

// clientFlags are the flags of every command that talks to the API.
type clientFlags struct {
	api, token, apiCA *string
	json              *bool
}

// addClientFlags adds the flags of the commands of the API to fs.
func (a *app) addClientFlags(fs *pflag.FlagSet) *clientFlags {
	var f clientFlags
	f.api, f.token, f.json = globalFlags(fs, a.getenv)
	f.apiCA = fs.String("api-ca", a.getenv("COFFER_API_CA"), "CA certificate (PEM) to trust for an https --api, such as coffer's CA (DATA/ca/ca.pem) (COFFER_API_CA)")
	return &f
}

// globalFlags adds --api, --token and --json to a command's flags.
func globalFlags(fs *pflag.FlagSet, getenv func(string) string) (api *string, token *string, asJSON *bool) {
	def := getenv("COFFER_API")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	api = fs.String("api", def, "coffer API address (COFFER_API)")
	// the token from the environment is not the flag's default, which
	// --help and a mistyped flag would print
	token = fs.String("token", "", "API token (COFFER_API_TOKEN)")
	*token = getenv("COFFER_API_TOKEN")
	asJSON = fs.Bool("json", false, "print JSON instead of tables")
	return
}

// newCLI is the client the flags name.
func (a *app) newCLI(f *clientFlags) (*cli, error) {
	c := &cli{api: newAPIClient(*f.api, *f.token), json: *f.json, stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, poll: 500 * time.Millisecond}
	if out, ok := a.stdout.(*os.File); ok {
		if st, err := out.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			c.tty = true
		}
	}
	if *f.apiCA != "" {
		if err := c.api.trust(*f.apiCA); err != nil {
			return nil, &usageError{err}
		}
	}
	return c, nil
}

// client makes cmd a command of the API: it gets the flags every such
// command has, and runs run with a client for the API they name.
func (a *app) client(cmd *cobra.Command, run func(ctx context.Context, c *cli, args []string) error) *cobra.Command {
	f := a.addClientFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.newCLI(f)
		if err != nil {
			return err
		}
		return run(cmd.Context(), c, args)
	}
	return cmd
}

// leaf is a command of the API with no flags of its own.
func (a *app) leaf(use, short string, args cobra.PositionalArgs, run func(ctx context.Context, c *cli, args []string) error) *cobra.Command {
	return a.client(&cobra.Command{Use: use, Short: short, Args: args}, run)
}

// passthrough makes cmd a command that parses its own flags with the
// standard flag package (pkg/daemon.Flags binds them to the environment,
// as the services' own binaries do): run parses args, and prints the
// usage of its flags, on errors and for -h, to flagOut.
func (a *app) passthrough(cmd *cobra.Command, run func(ctx context.Context, args []string, flagOut io.Writer) error) *cobra.Command {
	cmd.DisableFlagParsing = true
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if wantsHelp(args) {
			return c.Help()
		}
		return run(c.Context(), args, a.stderr)
	}
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		fmt.Fprintf(a.stdout, "%s\n\nUsage:\n  %s\n", c.Long, c.UseLine())
		if c.Example != "" {
			fmt.Fprintf(a.stdout, "\nExamples:\n%s\n", c.Example)
		}
		fmt.Fprintln(a.stdout)
		ctx := c.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		run(ctx, []string{"-h"}, a.stdout) // prints the flags, and returns flag.ErrHelp
	})
	return cmd
}

// wantsHelp reports whether flags asks for help, as the flag package
// reads them.
func wantsHelp(args []string) bool {
	for _, arg := range args {
		switch arg {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}
