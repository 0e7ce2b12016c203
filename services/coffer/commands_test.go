package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runClient runs coffer cmd args.
func runClient(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return execute(ctx, append([]string{cmd}, args...), getenv, strings.NewReader(""), stdout, stderr)
}

// runVault runs coffer vault args.
func runVault(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return execute(ctx, append([]string{"vault"}, args...), getenv, strings.NewReader(""), stdout, stderr)
}

// runCA runs coffer ca args.
func runCA(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return execute(context.Background(), append([]string{"ca"}, args...), getenv, strings.NewReader(""), stdout, stderr)
}

// cliRun runs a command line as main would, with getenv's environment,
// and returns its output and exit code.
func cliRun(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := execute(t.Context(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String() + errString(err), exitCode(err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// commands is every command of the tree but the root, with its path
// (its arguments on the command line).
func commands(t *testing.T) map[string]*cobra.Command {
	t.Helper()
	a := &app{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	all := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			all[subPath(sub)] = sub
			walk(sub)
		}
	}
	walk(a.root())
	if len(all) < 40 {
		t.Fatalf("the tree holds %d commands; want every one of coffer's", len(all))
	}
	return all
}

// ownFlags are the long names of c's flags, help's included.
func ownFlags(c *cobra.Command) []string {
	names := []string{"help"}
	c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	return names
}

var helpFlag = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)

// listedFlags are the flags the Flags sections of a help list (a
// command's own, and those it would inherit).
func listedFlags(help string) []string {
	var names []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case strings.HasSuffix(l, "Flags:"):
			in = true
		case in && strings.TrimSpace(l) == "":
			in = false
		case in:
			if m := helpFlag.FindStringSubmatch(l); m != nil {
				names = append(names, m[1])
			}
		}
	}
	sort.Strings(names)
	return names
}

// TestCommandHelp walks the command tree: coffer help X, X --help and X
// -h print X's help and exit 0, and the help lists X's own flags and no
// other; the commands that parse their own flags (up, sim, vault check...)
// list theirs.
func TestCommandHelp(t *testing.T) {
	env := map[string]string{"COFFER_DATA": t.TempDir()}
	all := commands(t)
	for path, c := range all {
		t.Run(path, func(t *testing.T) {
			args := strings.Fields(path)
			help, errOut, code := cliRun(t, env, append(args, "--help")...)
			if code != exitOK || errOut != "" {
				t.Fatalf("coffer %s --help: exit code %d, stderr %q; want 0 and nothing", path, code, errOut)
			}
			if !strings.Contains(help, "coffer "+path) {
				t.Errorf("coffer %s --help does not name the command:\n%s", path, help)
			}
			for _, alt := range [][]string{append(args, "-h"), append([]string{"help"}, args...)} {
				if got, _, code := cliRun(t, env, alt...); code != exitOK || got != help {
					t.Errorf("coffer %s: exit code %d, and printed\n%s\nwant 0 and the help of --help", strings.Join(alt, " "), code, got)
				}
			}
			if c.DisableFlagParsing {
				// the flag package's listing of the command's own flags
				if !strings.Contains(help, "Usage of coffer "+path+":") || !strings.Contains(help, "\n  -") {
					t.Errorf("coffer %s --help lists no flag:\n%s", path, help)
				}
				if path != "vault create" && (strings.Contains(help, "-api-ca") || strings.Contains(help, "-json")) {
					t.Errorf("coffer %s --help lists a flag of the API's commands:\n%s", path, help)
				}
				return
			}
			if got, want := listedFlags(help), ownFlags(c); !slices.Equal(got, want) {
				t.Errorf("coffer %s --help lists the flags %v; want its own, %v", path, got, want)
			}
		})
	}
}

// closedAPI is the address of an API that does not answer: a port that
// was just closed.
func closedAPI(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// validArgs are arguments that c accepts, its required flags given: the
// placeholders of its use line filled in.
func validArgs(t *testing.T, c *cobra.Command) []string {
	t.Helper()
	var args []string
	for _, w := range strings.Fields(c.Use)[1:] {
		if strings.HasPrefix(w, "(") || strings.HasPrefix(w, "-") {
			break // the flags
		}
		switch strings.Trim(w, "[].") {
		case "INSTANCE/DATABASE", "INSTANCE/DATABASE|PATTERN":
			args = append(args, "sql1/Sales")
		case "NAME", "ID", "TOKEN-ID", "INSTANCE":
			args = append(args, "x1")
		}
	}
	policy := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(policy, []byte(`{"name": "p"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	required := map[string][]string{
		"instance add":         {"--dsn", "sqlserver://sa:pw@127.0.0.1:1"},
		"instance autoprotect": {"--on"},
		"restore":              {"--latest", "--as", "Copy"},
		"policy set":           {"--file", policy},
		"user add":             {"--role", "viewer"},
	}
	return append(args, required[subPath(c)]...)
}

// TestFlagOfAnotherCommand: a flag given to a command of the API it does
// not belong to is a usage error (exit code 2), before anything is asked
// of the API; without it, the same command line reaches for the API.
func TestFlagOfAnotherCommand(t *testing.T) {
	api := closedAPI(t)
	env := map[string]string{"COFFER_API": api}
	all := commands(t)
	flags := map[string]bool{}
	var clients []string
	for path, c := range all {
		if c.Flags().Lookup("api") == nil || c.DisableFlagParsing {
			continue
		}
		clients = append(clients, path)
		c.Flags().VisitAll(func(f *pflag.Flag) { flags[f.Name] = true })
	}
	if len(clients) < 25 {
		t.Fatalf("%d commands of the API; want every one", len(clients))
	}
	sort.Strings(clients)
	tried := 0
	for _, path := range clients {
		c := all[path]
		args := append(strings.Fields(path), validArgs(t, c)...)
		if _, errOut, code := cliRun(t, env, args...); code != exitUnreachable {
			t.Errorf("coffer %s: exit code %d; want %d (the API at %s is closed)\n%s", strings.Join(args, " "), code, exitUnreachable, api, errOut)
			continue
		}
		for name := range flags {
			if c.Flags().Lookup(name) != nil {
				continue
			}
			tried++
			_, errOut, code := cliRun(t, env, append(args, "--"+name)...)
			if code != exitUsage || !strings.Contains(errOut, "unknown flag: --"+name) {
				t.Errorf("coffer %s --%s: exit code %d; want %d, unknown flag\n%s", strings.Join(args, " "), name, code, exitUsage, errOut)
			}
		}
	}
	t.Logf("%d commands of the API, %d foreign flags refused", len(clients), tried)
	// and the commands that do not talk to the API take none of its flags
	for _, args := range [][]string{{"ca", "init", "--dir", t.TempDir(), "--json"}, {"s3", "policy", "--bucket", "b", "--api", api}, {"up", "--api", api}} {
		if _, errOut, code := cliRun(t, env, args...); code != exitUsage {
			t.Errorf("coffer %s: exit code %d; want %d\n%s", strings.Join(args, " "), code, exitUsage, errOut)
		}
	}
}

// TestExitCodes: each kind of failure that needs no running coffer has
// its own exit code (job failures and refusals by a real gateway are in
// TestBackupFailures, TestVaultCheck and TestUpFirstAdmin).
func TestExitCodes(t *testing.T) {
	api := closedAPI(t)
	env := map[string]string{"COFFER_API": api}
	tests := []struct {
		args []string
		want int
		says string
	}{
		{[]string{"--help"}, exitOK, "Exit codes:"},
		{nil, exitUsage, "no command given"},
		{[]string{"jbos"}, exitUsage, `unknown command "jbos"`},
		{[]string{"rp", "frob"}, exitUsage, `unknown command "frob"`},
		{[]string{"rp"}, exitUsage, "usage: coffer rp delete ID..."},
		{[]string{"jobs", "--no-such-flag"}, exitUsage, "unknown flag: --no-such-flag"},
		{[]string{"help", "jbos"}, exitUsage, `unknown command "jbos"`},
		{[]string{"help", "rp", "frob"}, exitUsage, `unknown command "frob"`},
		{[]string{"jobs", "show"}, exitUsage, "missing argument"},
		{[]string{"jobs", "show", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{[]string{"backup", "Sales"}, exitUsage, "INSTANCE/DATABASE"},
		{[]string{"restore", "sql1/Sales", "--as", "X"}, exitUsage, "latest"},
		{[]string{"restore", "sql1/Sales", "--latest", "--point", "P", "--as", "X"}, exitUsage, "latest"},
		{[]string{"restore", "sql1/Sales", "--time", "yesterday", "--as", "X"}, exitUsage, "cannot read"},
		{[]string{"instance", "autoprotect", "sql1", "--on", "--off"}, exitUsage, "on"},
		{[]string{"vault", "check", "--no-such-flag"}, exitUsage, "flag provided but not defined"},
		{[]string{"vault", "create", "bad_name!", "--dir", t.TempDir()}, exitUsage, "vault name"},
		{[]string{"jobs"}, exitUnreachable, "cannot reach the coffer API"},
		{[]string{"restore", "sql1/Sales", "--latest", "--as", "X", "--wait"}, exitUnreachable, "cannot reach the coffer API"},
		{[]string{"jobs", "--api-ca", filepath.Join(t.TempDir(), "nosuch.pem")}, exitUsage, "--api-ca"},
	}
	for _, tt := range tests {
		out, errOut, code := cliRun(t, env, tt.args...)
		if code != tt.want || !strings.Contains(out+errOut, tt.says) {
			t.Errorf("coffer %s: exit code %d, printed\n%s%s\nwant %d and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want, tt.says)
		}
	}
}

// TestCompletion: coffer completion prints each shell's script, and the
// completion it drives offers a command's own flags only.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_coffer", "zsh": "#compdef coffer", "fish": "complete -c coffer", "powershell": "Register-ArgumentCompleter"} {
		out, errOut, code := cliRun(t, nil, "completion", shell)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("coffer completion %s: exit code %d, %d bytes, %q; want 0 and a script holding %q", shell, code, len(out), errOut, want)
		}
	}
	out, _, _ := cliRun(t, nil, cobra.ShellCompRequestCmd, "rp", "")
	for _, sub := range []string{"list", "ranges", "delete", "undelete"} {
		if !strings.Contains(out, sub+"\t") {
			t.Errorf("completing coffer rp offers %q; want %s among them", out, sub)
		}
	}
	out, _, _ = cliRun(t, nil, cobra.ShellCompRequestCmd, "restore", "sql1/Sales", "--latest", "--as", "X", "--")
	if !strings.Contains(out, "--wait") || !strings.Contains(out, "--api") || strings.Contains(out, "--dsn") || strings.Contains(out, "--role") {
		t.Errorf("completing coffer restore's flags offers\n%s\nwant its own (--wait, --api), not another's (--dsn, --role)", out)
	}
}
