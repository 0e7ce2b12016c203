//go:build !linux

package streamer_test

import (
	"syscall"
	"time"
)

func streamerProcAttr() *syscall.SysProcAttr { return nil }

// cpuTime is not measured outside Linux: the CPU metrics read 0.
func cpuTime(pid int) (time.Duration, error) { return 0, nil }
