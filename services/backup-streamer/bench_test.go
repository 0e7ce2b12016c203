package streamer_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/tlsca"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// BenchmarkBackup1GiB backs up a 1 GiB simulated database (131,072 pages
// of 8 KiB, filled by createFilled: rows in about 57% of the pages, the
// rest allocated and empty) through the streamer, running in a
// process of its own (see streamerProc), and the committer into a vault
// in MinIO on loopback, each iteration into a new, empty vault; restores
// it; then changes 0.1% of its pages and backs it up again. Beside that
// it measures, on a copy-only full of the same database, a plain upload to
// MinIO and the vault's writer alone. It reports:
//
//	streamer-MB/s         backup size / time from BackupRequested to the
//	                      job's success (the first full, into an empty vault)
//	restore-MB/s          backup size / time from RestoreRequested (that
//	                      full, from the vault in MinIO, to a new database)
//	                      to the job's success
//	minio-put-MB/s        backup size / time of one minio-go PutObject of
//	                      the raw backup file (minio-go's defaults)
//	ratio                 streamer-MB/s / minio-put-MB/s
//	sql-backup-MB/s       backup size / time of the BACKUP TO DISK alone
//	                      (the simulator producing the raw file)
//	vault-ceiling-MB/s    backup size / time of the vault's writer storing
//	                      the raw file (1 MiB reads from the page cache) as
//	                      the streamer does (default WriterOptions,
//	                      compression on) into a store that drops the
//	                      packs: the pipeline's ceiling on this machine, in
//	                      this process, on the same bytes
//	vault-ceiling-cpu-s/GiB
//	                      CPU-seconds the benchmark's process used while
//	                      the vault's writer stored the file into nothing,
//	                      per GiB: the pipeline's own cost, with which
//	                      backup-cpu-streamer-s/GiB compares
//	ceiling-ratio         streamer-MB/s / vault-ceiling-MB/s
//	vault-minio-MB/s      the same writer into a new vault in the same
//	                      MinIO: the vault and MinIO without SQL Server,
//	                      NATS or the streamer
//	objects/GiB           objects the first full added to the vault's
//	                      prefix in the bucket (listed after less before:
//	                      packs, indexes, the manifest; a backup overwrites
//	                      and deletes nothing), per GiB (2^30) of backup
//	second-full-MB/s      backup size / time of the second full, after
//	                      Instance.Commit(db, pages/1000): 131 page
//	                      rewrites, about 130 distinct pages (0.1%), four
//	                      in five in the database's hot last 1/32, as the
//	                      simulator places OLTP changes
//	second-full-added-MB  bytes (1e6) the second full added to the vault's
//	                      prefix in the bucket (listed after less before)
//	second-full-added-%   that, as a percentage of the backup size
//	backup-peak-RSS-MiB   the streamer process's peak resident set
//	                      (VmHWM, reset before the job, once freed memory
//	                      is back with the OS) during the first
//	                      full: Go runtime, NATS client, vault writer, S3
//	                      endpoint, all of it; nothing else runs in it
//	backup-peak-heap-MiB  its peak HeapInuse during that full, sampled
//	                      every 10 ms
//	restore-peak-RSS-MiB  its peak resident set during the restore
//	restore-peak-heap-MiB its peak HeapInuse during the restore
//	backup-cpu-streamer-s/GiB
//	                      CPU-seconds (user and system) the streamer
//	                      process used during the first full, per GiB of
//	                      backup; -minio- the same for MinIO, and -rest-
//	                      for the benchmark's own process (simulator,
//	                      NATS, committer). Unlike MB/s, these hardly
//	                      change when other work shares the machine.
//	restore-cpu-streamer-s/GiB, restore-cpu-minio-s/GiB, restore-cpu-rest-s/GiB
//	                      the same during the restore
//
// ns/op is the first full's time; B/op and allocs/op count the
// benchmark's own process (simulator, NATS, committer), not the streamer.
//
// The targets of issue #11 (documented, not asserted): streamer-MB/s at
// least 200 and ceiling-ratio at least 0.6; restore-MB/s at least 400;
// objects/GiB at most 40; backup-peak-RSS-MiB at most 256 whatever the
// database's size, which BenchmarkBackup10GiB shows.
//
// It runs three times: disk mode (BACKUP TO DISK into the staging
// directory, which the streamer tails; a restore reassembles the file
// there first), URL mode (BACKUP TO URL into the streamer's own S3
// endpoint, RESTORE FROM URL out of it: nothing staged), and URL mode
// striped over four URLs, as a database of 150 GB or more is.
//
// Disk mode stages in /dev/shm, a filesystem in memory, when it has room
// (the log says where), because SQL Server's staging share is not the
// object store's disk. On one disk, SQL Server's writing and flushing of
// its backup file, and the unlinking of it (with discards, on a filesystem
// mounted with them), queue MinIO's own flushes behind them. Measured on
// a two-core machine, the same code backed up in disk mode at 228-263
// MB/s with a ceiling ratio of 0.51-0.57 staged on disk, and at 274-305
// MB/s, 0.54-0.66, staged in memory; the simulator's CPU per GiB was
// 1.26-1.31 against 0.83-1.03, and the CPUs sat idle for 0.2-0.3 s at a
// time while MinIO waited. That is this machine's layout, not coffer's
// work. COFFER_BENCH_STAGING=disk stages in
// the test's temporary directory, as BenchmarkBackup10GiB does whenever
// /dev/shm is too small.
//
// With COFFER_BENCH_PROFILE_DIR set, the streamer process writes a CPU
// profile of the first full of each case there, as
// streamer-<case>.pprof, and of its restore, as
// streamer-<case>-restore.pprof, and a CPU profile of the benchmark's own
// process (the simulator, NATS and the committer) during that full and its
// restore, as rest-<case>.pprof and rest-<case>-restore.pprof.
func BenchmarkBackup1GiB(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    benchCase
	}{
		{"disk", benchCase{}},
		{"url", benchCase{url: true}},
		{"url-4-stripes", benchCase{url: true, stripeBytes: 300 << 20}},
	} {
		bc.c.pages, bc.c.secondFull, bc.c.compare = 1<<17, true, true
		b.Run(bc.name, func(b *testing.B) { benchBackup(b, bc.c) })
	}
}

// BenchmarkBackup10GiB backs up and restores a 10 GiB simulated database
// as BenchmarkBackup1GiB does, in disk mode and in URL mode, to check that
// the streamer's memory does not grow with the database: its target is
// backup-peak-RSS-MiB at most 256, as for 1 GiB. It reports streamer-MB/s,
// restore-MB/s, objects/GiB and the peaks, as BenchmarkBackup1GiB defines
// them. It takes a few minutes (145 s on a two-core machine) and 25 GB of
// disk, so it runs only with COFFER_BENCH_BIG=1; give go test a -timeout
// of an hour.
func BenchmarkBackup10GiB(b *testing.B) {
	if os.Getenv("COFFER_BENCH_BIG") != "1" {
		b.Skip("set COFFER_BENCH_BIG=1 to run it (a few minutes, 25 GB of disk)")
	}
	const pages = 10 << 17
	b.Run("disk", func(b *testing.B) { benchBackup(b, benchCase{pages: pages}) })
	b.Run("url", func(b *testing.B) { benchBackup(b, benchCase{pages: pages, url: true}) })
}

// benchCase is one backup benchmark.
type benchCase struct {
	pages int // the database's size in 8 KiB pages
	// url runs the benchmark in URL mode, with a backup striped every
	// stripeBytes of the database when that is set.
	url         bool
	stripeBytes int64
	// secondFull changes 0.1% of the pages after the restore and takes a
	// second full.
	secondFull bool
	// compare measures the comparisons: a plain upload of the raw backup
	// file, the vault's writer alone into MinIO and into nothing.
	compare bool
}

func benchBackup(b *testing.B, c benchCase) {
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
	if !c.url && os.Getenv("COFFER_BENCH_STAGING") != "disk" {
		// room for the backup's file and the restore's
		opt.staging = ramStaging(b, 2*int64(c.pages)*8192+256<<20)
	}
	if !c.url {
		where := "the test's temporary directory"
		if opt.staging != "" {
			where = opt.staging + " (in memory)"
		}
		b.Logf("staging directory: %s", where)
	}
	var caDir string
	if c.url {
		caDir = b.TempDir()
		ca, err := tlsca.Ensure(caDir)
		if err != nil {
			b.Fatal(err)
		}
		opt.sim.TrustedCAs = ca.Pool()
	}
	e := newEnv(b, opt)
	natsURL := e.listenNATS()
	const db = "Bench"
	e.createFilled(db, c.pages)
	// as long as a job may take at 20 MB/s, and two minutes at least
	jobTimeout := max(2*time.Minute, time.Duration(float64(c.pages)*8192/20e6*float64(time.Second)))
	profileDir := os.Getenv("COFFER_BENCH_PROFILE_DIR")
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			b.Fatal(err)
		}
	}

	// profilePath names a profile of this case: who ("streamer" or
	// "rest") during what ("" for the first full, "-restore")
	profilePath := func(who, what string) string {
		return filepath.Join(profileDir, who+"-"+strings.ReplaceAll(b.Name(), "/", "-")+what+".pprof")
	}
	var size, objects, added int64
	var elapsed, restoring, second time.Duration
	var backupPeak, restorePeak procReply
	var backupCPU, restoreCPU cpuSample
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		prefix := fmt.Sprintf("run-%d", i)
		e.store = newStore(prefix)
		v, err := vault.Init(ctx, e.store, e.master)
		if err != nil {
			b.Fatal(err)
		}
		e.vault = v
		stopC := e.startCommitter()
		p := startStreamerProc(b, streamerProcConfig{natsURL: natsURL, master: e.master, minio: srv, bucket: "vault",
			prefix: prefix, staging: e.staging, caDir: caDir, stripeBytes: c.stripeBytes})
		p.mark() // the peaks count from here
		if profileDir != "" && i == 0 {
			p.profile(profilePath("streamer", ""))
		}
		before := bucketUsage(b, srv, "vault", prefix)
		stopProfile := func() {}
		if profileDir != "" && i == 0 {
			stopProfile = profileSelf(b, profilePath("rest", ""))
		}
		cpu := sampleCPU(b, p, srv)
		b.StartTimer()

		start := time.Now()
		jid := e.backup(ctx, db, cofferv1.BackupType_BACKUP_TYPE_FULL)
		j := e.waitJob(jid, jobTimeout)
		elapsed += time.Since(start)
		stopProfile()
		backupCPU = backupCPU.add(sampleCPU(b, p, srv).sub(cpu))

		b.StopTimer()
		peak := p.mark()
		succeeded(b, "backup", j, peak)
		backupPeak.PeakRSS = max(backupPeak.PeakRSS, peak.PeakRSS)
		backupPeak.PeakHeap = max(backupPeak.PeakHeap, peak.PeakHeap)
		after := bucketUsage(b, srv, "vault", prefix)
		objects += after.objects - before.objects
		rp := e.mustRecoveryPoint(db, jid)
		size = rp.Size
		b.SetBytes(size)

		if profileDir != "" && i == 0 {
			p.profile(profilePath("streamer", "-restore"))
		}
		if profileDir != "" && i == 0 {
			stopProfile = profileSelf(b, profilePath("rest", "-restore"))
		}
		cpu = sampleCPU(b, p, srv)
		start = time.Now()
		j = e.waitJob(e.restore(ctx, db, fmt.Sprintf("Restored %d", i), false, rp.GetId()), jobTimeout)
		restoring += time.Since(start)
		stopProfile()
		restoreCPU = restoreCPU.add(sampleCPU(b, p, srv).sub(cpu))
		peak = p.mark()
		succeeded(b, "restore", j, peak)
		restorePeak.PeakRSS = max(restorePeak.PeakRSS, peak.PeakRSS)
		restorePeak.PeakHeap = max(restorePeak.PeakHeap, peak.PeakHeap)

		if c.secondFull {
			if _, err := e.inst.Commit(db, c.pages/1000); err != nil {
				b.Fatal(err)
			}
			before := bucketUsage(b, srv, "vault", prefix)
			start = time.Now()
			j = e.waitJob(e.backup(ctx, db, cofferv1.BackupType_BACKUP_TYPE_FULL), jobTimeout)
			second += time.Since(start)
			succeeded(b, "second full", j, p.mark())
			added += bucketUsage(b, srv, "vault", prefix).bytes - before.bytes
		}
		p.stop()
		if err := stopC(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()

	mb := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	total := size * int64(b.N)
	streamerMBs := mb(total, elapsed)
	b.ReportMetric(streamerMBs, "streamer-MB/s")
	b.ReportMetric(mb(total, restoring), "restore-MB/s")
	b.ReportMetric(float64(objects)/(float64(total)/(1<<30)), "objects/GiB")
	b.ReportMetric(float64(backupPeak.PeakRSS)/(1<<20), "backup-peak-RSS-MiB")
	b.ReportMetric(float64(backupPeak.PeakHeap)/(1<<20), "backup-peak-heap-MiB")
	b.ReportMetric(float64(restorePeak.PeakRSS)/(1<<20), "restore-peak-RSS-MiB")
	b.ReportMetric(float64(restorePeak.PeakHeap)/(1<<20), "restore-peak-heap-MiB")
	gib := float64(total) / (1 << 30)
	backupCPU.report(b, "backup", gib)
	restoreCPU.report(b, "restore", gib)
	if c.secondFull {
		b.ReportMetric(mb(total, second), "second-full-MB/s")
		b.ReportMetric(float64(added)/float64(b.N)/1e6, "second-full-added-MB")
		b.ReportMetric(100*float64(added)/float64(total), "second-full-added-%")
	}
	if !c.compare {
		return
	}

	// The same database, backed up to a file as SQL Server would.
	cl, err := mssql.Open(e.dsn())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	raw := filepath.Join(b.TempDir(), "raw.bak")
	defer os.Remove(raw)
	no := false
	start := time.Now()
	if err := cl.Backup(ctx, mssql.BackupRequest{Database: db, Type: mssql.CopyOnlyFull, Files: []string{raw}, Compression: &no}); err != nil {
		b.Fatal(err)
	}
	sqlBackup := time.Since(start)
	f, err := os.Open(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}

	// Uploaded as one object with minio-go's defaults.
	start = time.Now()
	if _, err := srv.Client(b).PutObject(ctx, "raw", "raw.bak", f, fi.Size(), minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	putMBs := mb(fi.Size(), time.Since(start))

	// Stored by the vault's writer alone, into nothing, then into MinIO.
	dir, err := dirstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	cpuBefore, err := cpuTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	ceiling := writeVault(b, discardPacks{dir}, e.master, raw)
	cpuAfter, err := cpuTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	ceilingMBs := mb(fi.Size(), ceiling)
	b.ReportMetric((cpuAfter-cpuBefore).Seconds()/(float64(fi.Size())/(1<<30)), "vault-ceiling-cpu-s/GiB")
	vaultMBs := mb(fi.Size(), writeVault(b, newStore("writer"), e.master, raw))

	b.ReportMetric(putMBs, "minio-put-MB/s")
	b.ReportMetric(streamerMBs/putMBs, "ratio")
	b.ReportMetric(mb(fi.Size(), sqlBackup), "sql-backup-MB/s")
	b.ReportMetric(ceilingMBs, "vault-ceiling-MB/s")
	b.ReportMetric(streamerMBs/ceilingMBs, "ceiling-ratio")
	b.ReportMetric(vaultMBs, "vault-minio-MB/s")
}

// profileSelf writes a CPU profile of this process to path until the
// function it returns is called.
func profileSelf(b *testing.B, path string) (stop func()) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatalf("profile %s: %v (is go test's -cpuprofile set too?)", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// succeeded fails the benchmark unless job j succeeded, saying how much
// memory the streamer process took for it in any case.
func succeeded(t testing.TB, what string, j *cofferv1.Job, peak procReply) {
	t.Helper()
	if j.State != cofferv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("%s job %s: state %v, error %q; want SUCCEEDED (the streamer's peak RSS during it: %.0f MiB, peak heap %.0f MiB)",
			what, j.GetId(), j.State, j.Error, float64(peak.PeakRSS)/(1<<20), float64(peak.PeakHeap)/(1<<20))
	}
}

// usage is what a prefix of a bucket holds.
type usage struct{ objects, bytes int64 }

func bucketUsage(t testing.TB, srv *miniotest.Server, bucket, prefix string) usage {
	t.Helper()
	var u usage
	for o := range srv.Client(t).ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		u.objects++
		u.bytes += o.Size
	}
	return u
}

// writeVault stores the file at path with a new vault's writer in store,
// as the streamer does (default options, compression on, 1 MiB reads),
// and returns how long the writer took.
func writeVault(b *testing.B, store blob.Store, master []byte, path string) time.Duration {
	b.Helper()
	v, err := vault.Init(b.Context(), store, master)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	w := v.NewWriter(b.Context(), vault.WriterOptions{})
	// Hiding f's WriteTo makes CopyBuffer use the buffer.
	_, err = io.CopyBuffer(w, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatalf("vault writer: %v", err)
	}
	return time.Since(start)
}

// discardPacks drops packs, the chunks' data, instead of storing them, and
// keeps the rest (config, keys, indexes): the vault's pipeline without a
// store's cost.
type discardPacks struct{ blob.Store }

func (d discardPacks) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasPrefix(key, "packs/") {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return d.Store.Put(ctx, key, r, size)
}

// cpuSample is the CPU the benchmark's processes have used.
type cpuSample struct{ streamer, store, rest time.Duration }

// sampleCPU reads the CPU used so far by the streamer process p, the
// MinIO server srv and this process.
func sampleCPU(t testing.TB, p *streamerProc, srv *miniotest.Server) cpuSample {
	t.Helper()
	var s cpuSample
	for _, x := range []struct {
		to  *time.Duration
		pid int
	}{{&s.streamer, p.cmd.Process.Pid}, {&s.store, srv.Pid()}, {&s.rest, os.Getpid()}} {
		d, err := cpuTime(x.pid)
		if err != nil {
			t.Fatalf("CPU time of process %d: %v", x.pid, err)
		}
		*x.to = d
	}
	return s
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{a.streamer - b.streamer, a.store - b.store, a.rest - b.rest}
}

func (a cpuSample) add(b cpuSample) cpuSample {
	return cpuSample{a.streamer + b.streamer, a.store + b.store, a.rest + b.rest}
}

// report reports the CPU-seconds per GiB of each process, as what-cpu-*.
func (a cpuSample) report(b *testing.B, what string, gib float64) {
	b.ReportMetric(a.streamer.Seconds()/gib, what+"-cpu-streamer-s/GiB")
	b.ReportMetric(a.store.Seconds()/gib, what+"-cpu-minio-s/GiB")
	b.ReportMetric(a.rest.Seconds()/gib, what+"-cpu-rest-s/GiB")
}
