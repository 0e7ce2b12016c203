package s3endpoint_test

import (
	"crypto/x509"
	"database/sql"
	"net/url"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
)

// TestBackupToURLAndBack: the simulated SQL Server 2022 backs up to the
// endpoint with BACKUP ... TO URL (a multipart upload of MAXTRANSFERSIZE
// parts, under a credential scoped to the job's prefix) and restores from
// it with RESTORE ... FROM URL (HEAD and ranged GETs); the restored
// database equals the source.
func TestBackupToURLAndBack(t *testing.T) {
	ts, store, _ := endpoint(t, keys{"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"}})
	cas := x509.NewCertPool()
	cas.AddCert(ts.Certificate())
	inst := mssqlsim.New(mssqlsim.Config{SAPassword: "Pw-1", DefaultPages: 3000, DataPath: "/data/", TrustedCAs: cas})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	if err := inst.CreateDatabase("it's ]odd ", mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Commit("it's ]odd ", 2000); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlserver", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Pw-1"), Host: addr, RawQuery: "encrypt=disable"}).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	host := ts.Listener.Addr().String()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE CREDENTIAL [s3://" + host + "/coffer/job1] WITH IDENTITY = 'S3 Access Key', SECRET = 'job1:s3cret'")
	file := "s3://" + host + "/coffer/job1/full.bak"
	exec("BACKUP DATABASE @p1 TO URL = @p2 WITH FORMAT", "it's ]odd ", file)
	if n := len(store.objects["coffer/job1/full.bak"]); n < 2*10<<20 {
		t.Fatalf("the endpoint holds %d bytes; want a backup of several 10 MB parts", n)
	}
	exec("RESTORE DATABASE [copy] FROM URL = @p1 WITH MOVE @p2 TO '/data/copy.mdf', MOVE @p3 TO '/data/copy.ldf'",
		file, "it's ]odd ", "it's ]odd _log")
	want, err := inst.ContentHash("it's ]odd ", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := inst.ContentHash("copy", time.Time{}); err != nil || got != want {
		t.Errorf("restored content %s (%v); want %s", got, err, want)
	}

	// a credential for another job's prefix reaches nothing here
	exec("CREATE CREDENTIAL [s3://" + host + "/coffer/job2] WITH IDENTITY = 'S3 Access Key', SECRET = 'job1:s3cret'")
	if _, err := db.ExecContext(t.Context(), "BACKUP DATABASE @p1 TO URL = @p2 WITH FORMAT", "it's ]odd ", "s3://"+host+"/coffer/job2/full.bak"); err == nil {
		t.Error("a backup outside the key's prefix succeeded")
	}
	if _, ok := store.objects["coffer/job2/full.bak"]; ok {
		t.Error("an object was stored outside the key's prefix")
	}
}
