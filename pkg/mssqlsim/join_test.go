package mssqlsim

import "testing"

// TestJoinWhere: a WHERE clause over a join filters the same rows whether
// its parts read the left source only (tested as the left row is chosen),
// the right side of a LEFT JOIN (tested after the join's NULL rows are
// added), or both.
func TestJoinWhere(t *testing.T) {
	_, db := startInstance(t, Config{})
	for _, name := range []string{"A", "B"} {
		exec(t, db, "CREATE DATABASE ["+name+"]")
		exec(t, db, "ALTER DATABASE ["+name+"] SET RECOVERY FULL")
	}
	exec(t, db, "BACKUP DATABASE [A] TO DISK = 'a1.bak'")
	exec(t, db, "BACKUP DATABASE [A] TO DISK = 'a2.bak'")
	exec(t, db, "BACKUP DATABASE [B] TO DISK = 'b1.bak'")
	const from = ` FROM msdb.dbo.backupset bs LEFT JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id `
	for _, tc := range []struct {
		where string
		want  int
	}{
		{"WHERE bs.database_name = 'A'", 2},
		{"WHERE bs.database_name = 'B' AND bs.type = 'D'", 1},
		{"WHERE mf.media_set_id IS NULL", 0},
		{"WHERE bs.database_name = 'A' AND mf.physical_device_name LIKE '%a2.bak'", 1},
		{"WHERE bs.database_name = 'A' OR mf.physical_device_name LIKE '%b1.bak'", 3},
		{"WHERE NOT (bs.database_name = 'A') AND mf.media_set_id IS NOT NULL", 1},
		{"WHERE bs.database_name = 'nobody'", 0},
	} {
		var n int
		if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*)"+from+tc.where).Scan(&n); err != nil {
			t.Fatalf("%s: %v", tc.where, err)
		}
		if n != tc.want {
			t.Errorf("%s: %d rows, want %d", tc.where, n, tc.want)
		}
	}
}
