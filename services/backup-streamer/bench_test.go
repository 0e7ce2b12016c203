package streamer_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

// BenchmarkBackup1GiB backs up a 1 GiB simulated database through the
// streamer (and the committer) into a vault in MinIO on loopback, each
// iteration into a new, empty vault, and compares its throughput with a
// plain minio-go PutObject of the same backup file. It reports:
//
//	streamer-MB/s   backup size / time from BackupRequested to the job's success
//	minio-put-MB/s  backup size / time of one PutObject of the raw backup file
//	ratio           streamer-MB/s / minio-put-MB/s
//	sql-backup-MB/s backup size / time of the BACKUP TO DISK alone (the
//	                simulator producing the raw file)
//	restore-MB/s    backup size / time from RestoreRequested (the full, from
//	                the vault in MinIO, to a new database) to the job's success
//	peak-heap-MB    the process's peak HeapInuse during the streamer runs
//	                (the simulator and NATS run in this process too)
//	heap-growth-MB  that peak less the HeapInuse before the runs
//
// It runs three times: disk mode (BACKUP TO DISK into the staging
// directory, which the streamer tails; a restore reassembles the file
// there first), URL mode (BACKUP TO URL into the streamer's own S3
// endpoint, RESTORE FROM URL out of it: nothing staged), and URL mode
// striped over four URLs, as a database of 150 GB or more is.
func BenchmarkBackup1GiB(b *testing.B) {
	b.Run("disk", func(b *testing.B) { benchBackup1GiB(b, false, 0) })
	b.Run("url", func(b *testing.B) { benchBackup1GiB(b, true, 0) })
	b.Run("url-4-stripes", func(b *testing.B) { benchBackup1GiB(b, true, 300<<20) })
}

// benchBackup1GiB runs the benchmark in URL mode when url is set, with a
// backup striped every stripeBytes of the database when that is set.
func benchBackup1GiB(b *testing.B, url bool, stripeBytes int64) {
	srv := miniotest.Start(b)
	srv.MakeBucket(b, "vault")
	srv.MakeBucket(b, "raw")
	ctx := context.Background()
	newStore := func(prefix string) *s3store.Store {
		s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "vault", Prefix: prefix,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, RootCAs: srv.CertPool()})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	opt := envOptions{store: newStore("setup")}
	var endpoint streamer.Endpoint
	if url {
		ca, err := tlsca.New("bench CA", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		opt.sim.TrustedCAs = ca.Pool()
		endpoint = streamer.Endpoint{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, StripeBytes: stripeBytes}
	}
	e := newEnv(b, opt)
	const db = "Bench1GiB"
	e.createFilled(db, 131072) // 1 GiB of 8 KiB pages, nearly all holding rows

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := &peakHeap{}
	stopSampling := peak.sample(10 * time.Millisecond)

	var size int64
	var elapsed, restoring time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		e.store = newStore(fmt.Sprintf("run-%d", i))
		v, err := vault.Init(ctx, e.store, e.master)
		if err != nil {
			b.Fatal(err)
		}
		e.vault = v
		stopC := e.startCommitter()
		cfg := e.streamerConfig()
		cfg.Logger = nil
		cfg.Endpoint = endpoint
		stopS := e.startStreamer(cfg)
		b.StartTimer()

		start := time.Now()
		jid := e.backup(ctx, db, cofferv1.BackupType_BACKUP_TYPE_FULL)
		e.mustSucceed(jid)
		elapsed += time.Since(start)

		b.StopTimer()
		rp := e.mustRecoveryPoint(db, jid)
		size = rp.Size
		b.SetBytes(size)
		start = time.Now()
		e.mustSucceed(e.restore(ctx, db, fmt.Sprintf("Restored %d", i), false, rp.GetId()))
		restoring += time.Since(start)
		if err := stopS(); err != nil {
			b.Fatal(err)
		}
		if err := stopC(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	stopSampling()

	// The same bytes, uploaded as one object with minio-go's defaults.
	c, err := mssql.Open(e.dsn())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	raw := filepath.Join(b.TempDir(), "raw.bak")
	no := false
	start := time.Now()
	if err := c.Backup(ctx, mssql.BackupRequest{Database: db, Type: mssql.CopyOnlyFull, Files: []string{raw}, Compression: &no}); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	sqlBackup := time.Since(start)
	start = time.Now()
	if _, err := srv.Client(b).PutObject(ctx, "raw", "raw.bak", f, fi.Size(), minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	put := time.Since(start)
	os.Remove(raw)

	mb := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	streamerMBs := mb(size*int64(b.N), elapsed)
	putMBs := mb(fi.Size(), put)
	b.ReportMetric(streamerMBs, "streamer-MB/s")
	b.ReportMetric(putMBs, "minio-put-MB/s")
	b.ReportMetric(streamerMBs/putMBs, "ratio")
	b.ReportMetric(mb(size*int64(b.N), restoring), "restore-MB/s")
	b.ReportMetric(mb(fi.Size(), sqlBackup), "sql-backup-MB/s")
	b.ReportMetric(float64(peak.max())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(peak.max()-min(peak.max(), base.HeapInuse))/(1<<20), "heap-growth-MB")
}

// peakHeap samples HeapInuse and keeps the largest value seen.
type peakHeap struct {
	mu   sync.Mutex
	peak uint64
}

func (p *peakHeap) sample(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			p.mu.Lock()
			p.peak = max(p.peak, ms.HeapInuse)
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (p *peakHeap) max() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}
