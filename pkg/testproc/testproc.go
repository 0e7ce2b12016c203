// Package testproc holds what tests need to run real servers as child
// processes (MinIO, nats-server, coffer's own binaries): finding a
// binary, free loopback ports, tying a child's life to the test binary's,
// and a buffer for its output.
package testproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// FindBinary returns the path of the executable name: $env when set, else
// name on PATH, else $GOPATH/bin/name with GOPATH defaulting to ~/go as
// the go command does (where scripts/install-tools.sh puts it). It does
// not run go, which would be slow and may not be on PATH.
func FindBinary(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if err := CheckExecutable(p); err != nil {
			return "", fmt.Errorf("%s: %w", env, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var candidates []string
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, d := range filepath.SplitList(gopath) {
			candidates = append(candidates, filepath.Join(d, "bin", name))
		}
	} else if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, "go", "bin", name))
	}
	for _, p := range candidates {
		if CheckExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s binary not found (looked at $%s, PATH and %s)", name, env, strings.Join(candidates, ", "))
}

// CheckExecutable reports whether path is a regular file someone may
// execute.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. All n listeners are held open together so the ports differ.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Buffer is a bytes buffer safe for the concurrent writes of a process's
// stdout and stderr copiers and reads by the test.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
