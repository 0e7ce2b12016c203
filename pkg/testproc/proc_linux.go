package testproc

import "syscall"

// SysProcAttr makes the kernel kill a child process if the test binary
// dies without running its cleanups (a panic, go test's -timeout), so no
// server outlives the tests that started it. Strictly the signal follows
// the OS thread that started the child, but the Go runtime does not end
// its threads while the process lives, barring a goroutine that exits
// locked to one.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
