package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/vault"
)

// KeySource is where a master key comes from, one way of three: the key
// itself in an environment variable (never a flag, which every process
// listing shows), a file holding it, or a command that prints it.
type KeySource struct {
	// Name says which key in errors: "master key", "new master key".
	Name string
	// Env is the variable that holds the key; Env_FILE and Env_COMMAND
	// are the file's and the command's.
	Env string
	// Flag is the start of the file's and the command's flags:
	// --Flag-file and --Flag-command.
	Flag string
	// Key is the value of Env.
	Key string
	// File holds the key.
	File string
	// Command, run by /bin/sh, prints the key.
	Command string
}

// Validate reports a key given more than one way.
func (k KeySource) Validate() error {
	if k.Command != "" && (k.Key != "" || k.File != "") {
		return fmt.Errorf("--%s-command: give the %s one way, not also %s or --%s-file", k.Flag, k.Name, k.Env, k.Flag)
	}
	return nil
}

// Given reports whether the key is given at all.
func (k KeySource) Given() bool { return k.Key != "" || k.File != "" || k.Command != "" }

// Read reads the key, hex or base64. No error repeats a key, or what the
// command printed.
func (k KeySource) Read() ([]byte, error) {
	if k.Command != "" {
		return k.runCommand()
	}
	if k.Key != "" {
		key, err := vault.ParseMasterKey(k.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.Env, err)
		}
		return key, nil
	}
	if k.File != "" {
		b, err := os.ReadFile(k.File)
		if err != nil {
			return nil, fmt.Errorf("read the %s file: %w", k.Name, err)
		}
		key, err := vault.ParseMasterKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s file %s: %w", k.Name, k.File, err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("no %s: set %s (64 hex characters), %s_FILE (--%s-file) or %s_COMMAND (--%s-command)",
		k.Name, k.Env, k.Env, k.Flag, k.Env, k.Flag)
}

// keyCommandTimeout bounds the run of a key command.
const keyCommandTimeout = 30 * time.Second

// runCommand runs the command with /bin/sh and parses what it prints as
// the key. What it prints is never part of an error; what it writes to
// its standard error is, to say why it failed.
func (k KeySource) runCommand() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", k.Command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer in %v", keyCommandTimeout)
		}
		if msg != "" {
			return nil, fmt.Errorf("%s command: %w: %s", k.Name, err, msg)
		}
		return nil, fmt.Errorf("%s command: %w", k.Name, err)
	}
	key, err := vault.ParseMasterKey(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s command: what it printed is not a key: %w", k.Name, err)
	}
	return key, nil
}
