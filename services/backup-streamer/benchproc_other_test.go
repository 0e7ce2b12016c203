//go:build !linux

package streamer_test

import (
	"syscall"
	"testing"
	"time"
)

func streamerProcAttr() *syscall.SysProcAttr { return nil }

// cpuTime is not measured outside Linux: the CPU metrics read 0.
func cpuTime(pid int) (time.Duration, error) { return 0, nil }

// ramStaging has no filesystem in memory to offer outside Linux.
func ramStaging(tb testing.TB, need int64) string { return "" }
