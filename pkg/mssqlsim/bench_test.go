package mssqlsim

import (
	"context"
	"fmt"
	"testing"
)

// nopMessenger drops progress messages.
type nopMessenger struct{}

func (nopMessenger) info(int32, string, ...any) {}
func (nopMessenger) abort()                     {}

// BenchmarkBackupToDisk measures BACKUP DATABASE TO DISK of a 1 GiB
// database (the target is 500 MB/s or more on a 2-core machine).
func BenchmarkBackupToDisk(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("1GiB/compression=%v", compress), func(b *testing.B) {
			dir := b.TempDir()
			inst := New(Config{BackupDir: dir, SAPassword: "x"})
			const pages = 1 << 30 / PageSize
			if err := inst.CreateDatabase("big", DatabaseOptions{Pages: pages}); err != nil {
				b.Fatal(err)
			}
			for k := 0; k < 2000; k++ {
				inst.Commit("big", 64)
			}
			st := &backupStmt{database: "big", targets: []target{{spec: "big.bak"}}, format: true, compression: &compress}
			b.SetBytes(pages * PageSize)
			b.ResetTimer()
			for b.Loop() {
				if e := inst.backup(context.Background(), "sa", st, nopMessenger{}); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// BenchmarkRestoreFromDisk measures RESTORE DATABASE of the same 1 GiB
// backup.
func BenchmarkRestoreFromDisk(b *testing.B) {
	dir := b.TempDir()
	inst := New(Config{BackupDir: dir, SAPassword: "x"})
	const pages = 1 << 30 / PageSize
	if err := inst.CreateDatabase("big", DatabaseOptions{Pages: pages}); err != nil {
		b.Fatal(err)
	}
	if _, err := inst.Commit("big", 4*pages); err != nil {
		b.Fatal(err)
	}
	st := &backupStmt{database: "big", targets: []target{{spec: "big.bak"}}, format: true}
	if e := inst.backup(context.Background(), "sa", st, nopMessenger{}); e != nil {
		b.Fatal(e)
	}
	rs := &restoreStmt{kind: "DATABASE", database: "big", sources: []target{{spec: "big.bak"}}, replace: true}
	b.SetBytes(pages * PageSize)
	b.ResetTimer()
	for b.Loop() {
		if e := inst.restore(context.Background(), "sa", rs, nopMessenger{}); e != nil {
			b.Fatal(e)
		}
	}
}
