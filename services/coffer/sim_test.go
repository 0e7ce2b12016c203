package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startSim runs `coffer sim` in-process on a free port and returns its
// address.
func startSim(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"sim", "--addr", "127.0.0.1:0", "--sa-password", "Sim-Pa55!"}, args...), pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coffer sim: %v", err)
		}
	})
	addrRE := regexp.MustCompile(`listening on (\S+)`)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("coffer sim exited before listening")
		}
		m := addrRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		go func() {
			for range lines {
			}
		}()
		return m[1]
	case <-time.After(30 * time.Second):
		t.Fatal("coffer sim did not start")
	}
	return ""
}

// TestSimWithFreeTDS proves the simulator speaks TDS to an independent
// client: FreeTDS's tsql lists the demo databases.
func TestSimWithFreeTDS(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tsql (Debian package freetds-bin) is not installed; scripts/install-tools.sh installs it")
		}
		t.Skip("tsql not installed; run make tools")
	}
	addr := startSim(t, "--demo")
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.CommandContext(t.Context(), tsql, "-H", host, "-p", port, "-U", "sa", "-P", "Sim-Pa55!")
	cmd.Stdin = strings.NewReader("SELECT name, recovery_model_desc FROM sys.databases ORDER BY database_id\ngo\nBACKUP DATABASE [Reporting]]Archive] TO DISK = 'r.bak'\ngo\nexit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsql: %v\n%s", err, out)
	}
	for _, want := range []string{"master", "Sales", "HR Payroll\tSIMPLE", "Reporting]Archive\tBULK_LOGGED", "(8 rows affected)", "BACKUP DATABASE successfully processed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tsql output lacks %q:\n%s", want, out)
		}
	}
}

// TestSimWrongPassword: a wrong password is refused with 18456.
func TestSimWrongPassword(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tsql (Debian package freetds-bin) is not installed")
		}
		t.Skip("tsql not installed; run make tools")
	}
	addr := startSim(t)
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.CommandContext(t.Context(), tsql, "-H", host, "-p", port, "-U", "sa", "-P", "wrong")
	cmd.Stdin = strings.NewReader("exit\n")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "18456") {
		t.Fatalf("tsql with a wrong password did not report 18456:\n%s", out)
	}
}

func TestSimFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no password", []string{"--addr", "127.0.0.1:0"}, nil, "--sa-password is required"},
		{"password from env", []string{}, map[string]string{"COFFER_SIM_SA_PASSWORD": "p"}, ""},
		{"stray argument", []string{"--sa-password", "p", "extra"}, nil, `unexpected argument "extra"`},
		{"time zone", []string{"--sa-password", "p", "--timezone", "Europe/Paris"}, nil, ""},
		{"unknown time zone", []string{"--sa-password", "p", "--timezone", "Mars/Olympus"}, nil, "--timezone"},
		{"SQL Server 2019", []string{"--sa-password", "p", "--version", "2019"}, nil, ""},
		{"unknown version", []string{"--sa-password", "p", "--version", "2017"}, nil, "--version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSimFlags(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
