package mssqlsim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFaults drives each injected failure through a real client and checks
// that the backup fails visibly and records nothing.
func TestFaults(t *testing.T) {
	backupsetRows := func(t *testing.T, inst *Instance) int {
		inst.mu.Lock()
		defer inst.mu.Unlock()
		return len(inst.backupsets)
	}

	t.Run("connection dropped mid-backup", func(t *testing.T) {
		inst, db := startInstance(t, Config{DefaultPages: 4096})
		exec(t, db, "CREATE DATABASE [d]")
		remove := inst.InjectFault(Fault{Kind: FaultDropConnection, Database: "d", AfterBytes: 4 << 20})
		defer remove()
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO DISK = 'drop.bak'")
		if err == nil {
			t.Fatal("backup succeeded through a dropped connection")
		}
		if n := errNumber(err); n != 0 {
			t.Fatalf("got SQL error %d (%v), want a connection error", n, err)
		}
		// the server ends the dropped session's backup on its own time, as
		// SQL Server does a killed session's: until then another backup of
		// the database is refused with 3023
		eventually(t, 10*time.Second, "the dropped backup to end", func() bool {
			d, _ := inst.lookup("d")
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.activeBackups == 0
		})
		if n := backupsetRows(t, inst); n != 0 {
			t.Errorf("backupset rows: got %d, want 0", n)
		}
		// the half-written file is not a restorable backup
		wantErr(t, db, 3241, "RESTORE HEADERONLY FROM DISK = 'drop.bak'")
		// the differential base did not move: a differential still needs a full
		wantErr(t, db, 3035, "BACKUP DATABASE [d] TO DISK = 'diff.bak' WITH DIFFERENTIAL")
	})

	t.Run("disk full", func(t *testing.T) {
		inst, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		remove := inst.InjectFault(Fault{Kind: FaultDiskFull, AfterBytes: 1 << 20})
		defer remove()
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO DISK = 'full.bak'")
		if got := allNumbers(err); len(got) != 2 || got[0] != 3202 || got[1] != 3013 {
			t.Fatalf("got %v (%v), want [3202 3013]", got, err)
		}
		if n := backupsetRows(t, inst); n != 0 {
			t.Errorf("backupset rows: got %d, want 0", n)
		}
	})

	t.Run("stalled stream cancelled by the client", func(t *testing.T) {
		inst, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		remove := inst.InjectFault(Fault{Kind: FaultStall, AfterBytes: 256 << 10})
		defer remove()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := db.ExecContext(ctx, "BACKUP DATABASE [d] TO DISK = 'stall.bak'")
			done <- err
		}()
		// wait until the backup is running (the database holds it)
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, _ := inst.lookup("d")
			d.mu.Lock()
			active := d.activeBackups
			d.mu.Unlock()
			if active > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("backup never started")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cancel did not stop a stalled backup")
		}
		if n := backupsetRows(t, inst); n != 0 {
			t.Errorf("backupset rows: got %d, want 0", n)
		}
		// the connection pool still works
		exec(t, db, "SELECT 1")
	})

	t.Run("database offline", func(t *testing.T) {
		inst, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		if err := inst.SetOffline("d", true); err != nil {
			t.Fatal(err)
		}
		wantErr(t, db, 942, "BACKUP DATABASE [d] TO DISK = 'off.bak'")
	})

	t.Run("backup directory missing", func(t *testing.T) {
		_, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		wantErr(t, db, 3201, "BACKUP DATABASE [d] TO DISK = @p1", filepath.Join(t.TempDir(), "no", "such", "dir.bak"))
	})
}

// TestPersistence saves an instance and loads it back: databases, chains
// and backups survive.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	inst, db := startInstance(t, Config{Now: clk.Now, BackupDir: dir})
	exec(t, db, "CREATE DATABASE [Keep me]")
	inst.Commit("Keep me", 5)
	exec(t, db, "BACKUP DATABASE [Keep me] TO DISK = 'k.bak'")
	clk.Advance(time.Second)
	inst.Commit("Keep me", 5)
	hash := queryHash(t, db, "Keep me", zeroTime)
	state := filepath.Join(dir, "state.gob")
	if err := inst.Save(state); err != nil {
		t.Fatal(err)
	}
	inst.Close()

	again, err := Load(state, Config{Now: clk.Now, BackupDir: dir, SAPassword: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := again.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	db2 := connect(t, addr, "sa", testPassword)
	if got := queryHash(t, db2, "Keep me", zeroTime); got != hash {
		t.Fatalf("hash after reload %s, want %s", got, hash)
	}
	// the log chain continues: a log backup after reload is accepted
	exec(t, db2, "BACKUP LOG [Keep me] TO DISK = 'k.trn'")
	var n int
	if err := db2.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupset").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("backupset rows after reload: got %d, want 2", n)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
}

// TestBackupRate checks that Config.BackupRate paces a backup: it cannot
// finish before its bytes at that rate would have taken.
func TestBackupRate(t *testing.T) {
	const rate = 20e6 // bytes a second
	inst, db := startInstance(t, Config{BackupRate: rate})
	exec(t, db, "CREATE DATABASE [d]")
	start := time.Now()
	exec(t, db, "BACKUP DATABASE [d] TO DISK = 'paced.bak'")
	took := time.Since(start)
	fi, err := os.Stat(filepath.Join(inst.cfg.BackupDir, "paced.bak"))
	if err != nil {
		t.Fatal(err)
	}
	if least := time.Duration(float64(fi.Size()) / rate * float64(time.Second)); took < least {
		t.Errorf("a backup of %d bytes at %.0f B/s took %v, less than %v", fi.Size(), rate, took, least)
	}
}
