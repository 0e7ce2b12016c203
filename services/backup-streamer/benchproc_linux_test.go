package streamer_test

import "syscall"

// streamerProcAttr makes the kernel kill the streamer process if the
// benchmark dies without stopping it.
func streamerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
