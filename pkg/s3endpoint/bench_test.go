package s3endpoint_test

import (
	"context"
	"crypto/x509"
	"database/sql"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/s3endpoint"
)

// discardStore counts what is uploaded and keeps nothing.
type discardStore struct{ memStore }

func (d *discardStore) NewUpload(context.Context, string, string) (s3endpoint.Upload, error) {
	return discardUpload{}, nil
}

type discardUpload struct{}

func (discardUpload) Write(p []byte) (int, error)    { return io.Discard.Write(p) }
func (discardUpload) Complete(context.Context) error { return nil }
func (discardUpload) Abort(error)                    {}

// BenchmarkBackupToEndpoint: the simulated SQL Server 2022 backs up a
// 1 GiB database to the endpoint with BACKUP TO URL (TLS, SigV4, parts
// in order), into a store that keeps nothing: the endpoint's own cost and
// the simulator's, without the vault's.
func BenchmarkBackupToEndpoint(b *testing.B) {
	srv, err := s3endpoint.New(s3endpoint.Config{Keys: keys{"job1": {ID: "job1", Secret: "s3cret", Bucket: "coffer", Prefix: "job1/"}},
		Store: &discardStore{}})
	if err != nil {
		b.Fatal(err)
	}
	ts := newTLSServer(b, srv)
	cas := x509.NewCertPool()
	cas.AddCert(ts.Certificate())
	inst := mssqlsim.New(mssqlsim.Config{SAPassword: "Pw-1", DefaultPages: 131072, TrustedCAs: cas})
	addr, err := inst.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close() })
	if err := inst.CreateDatabase("Big", mssqlsim.DatabaseOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := inst.Commit("Big", 4*131072); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlserver", (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Pw-1"), Host: addr, RawQuery: "encrypt=disable"}).String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	host := ts.Listener.Addr().String()
	if _, err := db.Exec("CREATE CREDENTIAL [s3://" + host + "/coffer/job1] WITH IDENTITY = 'S3 Access Key', SECRET = 'job1:s3cret'"); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(131072 * 8192)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := db.Exec("BACKUP DATABASE [Big] TO URL = @p1 WITH FORMAT", "s3://"+host+"/coffer/job1/big.bak"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*131072*8192/1e6/time.Since(start).Seconds(), "backup-MB/s")
}
