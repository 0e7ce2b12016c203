package daemon_test

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// common parses the process settings from env and args.
func common(t *testing.T, env map[string]string, args ...string) daemon.Common {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := daemon.NewFlags(fs, func(k string) string { return env[k] })
	var c daemon.Common
	c.Register(f, false)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMasterKeyCommand: the key a command prints is the master key; a
// command that fails says why (its standard error) and one that prints
// something else is refused without repeating what it printed; a command
// with another source of the key is refused.
func TestMasterKeyCommand(t *testing.T) {
	const key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	c := common(t, nil, "--master-key-command", "printf '%s\\n' "+key)
	if !c.HasMasterKey() {
		t.Error("a key command is a master key")
	}
	k, err := c.MasterKey()
	if err != nil || len(k) != 32 || k[1] != 0x11 {
		t.Fatalf("MasterKey() = %x, %v; want the key printed", k, err)
	}
	c = common(t, map[string]string{"COFFER_MASTER_KEY_COMMAND": "echo vault sealed >&2; exit 3"})
	if _, err := c.MasterKey(); err == nil || !strings.Contains(err.Error(), "vault sealed") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a failing command: %v; want its exit status and what it wrote to standard error", err)
	}
	c = common(t, nil, "--master-key-command", "echo not-a-key-but-a-secret")
	if _, err := c.MasterKey(); err == nil || strings.Contains(err.Error(), "not-a-key-but-a-secret") {
		t.Errorf("a command printing no key: %v; want an error that does not repeat what it printed", err)
	}
	c = common(t, map[string]string{"COFFER_MASTER_KEY": key}, "--master-key-command", "true")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "one way") {
		t.Errorf("a key command and COFFER_MASTER_KEY: %v; want a refusal", err)
	}
}
