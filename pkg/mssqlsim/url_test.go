package mssqlsim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/miniotest"
)

// TestBackupToURL backs up to a real MinIO over TLS as SQL Server 2022
// does (multipart, parts of MAXTRANSFERSIZE), striped over two URLs, and
// restores from it.
func TestBackupToURL(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	clk := newFakeClock()
	inst, db := startInstance(t, Config{Now: clk.Now, TrustedCAs: s3.CertPool(), DefaultPages: 2048})
	exec(t, db, "CREATE DATABASE [Sales]")
	for k := 0; k < 50; k++ {
		if _, err := inst.Commit("Sales", 8); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	exec(t, db, fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", base, s3.AccessKey, s3.SecretKey))

	u1, u2 := base+"/sales/full-1.bak", base+"/sales/full-2.bak"
	exec(t, db, "BACKUP DATABASE [Sales] TO URL = @p1, URL = @p2 WITH FORMAT, MAXTRANSFERSIZE = 5242880, CHECKSUM", u1, u2)
	want := queryHash(t, db, "Sales", zeroTime)

	// each stripe is a multipart object of 5 MiB parts: 16 MiB over two
	// stripes gives two parts each
	for _, key := range []string{"sales/full-1.bak", "sales/full-2.bak"} {
		info, err := s3.Client(t).StatObject(t.Context(), "sql", key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatalf("stat %s: %v", key, err)
		}
		if !strings.Contains(info.ETag, "-") {
			t.Errorf("%s: ETag %q is not a multipart ETag", key, info.ETag)
		}
	}

	// no append to URL without FORMAT
	wantErr(t, db, 3201, "BACKUP DATABASE [Sales] TO URL = @p1, URL = @p2", u1, u2)

	var count int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupmediafamily WHERE physical_device_name LIKE 's3://%'").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 2 {
		t.Errorf("backupmediafamily URL rows: got %d, want 2", count)
	}

	dir := t.TempDir()
	exec(t, db, "RESTORE DATABASE [Sales_copy] FROM URL = @p1, URL = @p2 WITH MOVE 'Sales' TO @p3, MOVE 'Sales_log' TO @p4",
		u1, u2, filepath.Join(dir, "c.mdf"), filepath.Join(dir, "c.ldf"))
	if got := queryHash(t, db, "Sales_copy", zeroTime); got != want {
		t.Fatalf("restored from URL: hash %s, want %s", got, want)
	}
	// a stripe missing
	wantErr(t, db, 3132, "RESTORE VERIFYONLY FROM URL = @p1", u1)
	exec(t, db, "RESTORE VERIFYONLY FROM URL = @p1, URL = @p2 WITH CHECKSUM", u1, u2)
}

// TestBackupToURLFailures covers an untrusted endpoint, a missing
// credential and an upload that fails half-way.
func TestBackupToURLFailures(t *testing.T) {
	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "sql")
	base := fmt.Sprintf("s3://%s/sql", s3.Endpoint)
	cred := fmt.Sprintf("CREATE CREDENTIAL [%s] WITH IDENTITY = 'S3 Access Key', SECRET = '%s:%s'", base, s3.AccessKey, s3.SecretKey)

	t.Run("untrusted CA", func(t *testing.T) {
		_, db := startInstance(t, Config{})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		err := wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", base+"/untrusted.bak")
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %q does not name the certificate problem", err)
		}
	})
	t.Run("no credential", func(t *testing.T) {
		_, db := startInstance(t, Config{TrustedCAs: s3.CertPool()})
		exec(t, db, "CREATE DATABASE [d]")
		wantErr(t, db, 3201, "BACKUP DATABASE [d] TO URL = @p1", base+"/nocred.bak")
	})
	t.Run("upload fails", func(t *testing.T) {
		inst, db := startInstance(t, Config{TrustedCAs: s3.CertPool(), DefaultPages: 2048})
		exec(t, db, "CREATE DATABASE [d]")
		exec(t, db, cred)
		remove := inst.InjectFault(Fault{Kind: FaultUploadFailure, AfterBytes: 6 << 20})
		defer remove()
		_, err := db.ExecContext(t.Context(), "BACKUP DATABASE [d] TO URL = @p1 WITH MAXTRANSFERSIZE = 5242880", base+"/failed.bak")
		if got := allNumbers(err); len(got) != 2 || got[0] != 3202 || got[1] != 3013 {
			t.Fatalf("got errors %v (%v), want [3202 3013]", got, err)
		}
		// the object was never completed, and nothing was recorded in msdb
		if _, err := s3.Client(t).StatObject(t.Context(), "sql", "failed.bak", minio.StatObjectOptions{}); err == nil {
			t.Error("a failed backup left a complete object")
		}
		uploads := 0
		for u := range s3.Client(t).ListIncompleteUploads(context.Background(), "sql", "failed.bak", true) {
			if u.Err == nil {
				uploads++
			}
		}
		if uploads != 1 {
			t.Errorf("unfinished multipart uploads: got %d, want 1 (SQL Server 2022 leaves one behind)", uploads)
		}
		var n int
		if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.backupset").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("msdb.dbo.backupset rows after a failed backup: got %d, want 0", n)
		}
	})
}
