package vault_test

import (
	"context"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/vault"
)

const benchStreamSize = 1 << 30

// pageStream yields size bytes of SQL-like pages without generating them
// all: it repeats a 64 MiB pool of pages, stamping each page with a round
// number so that no page, and so no chunk, repeats. Rounds continue across
// streams from one pageStream, so each stream is new data to the vault.
type pageStream struct {
	pool  []byte
	round uint64
}

func newPageStream() *pageStream { return &pageStream{pool: makePages(1000, 0, 64<<20/pageSize)} }

// writeTo writes size bytes of fresh pages to w, 1 MiB at a time.
func (s *pageStream) writeTo(w io.Writer, size int) error {
	for size > 0 {
		s.round++
		for off := 0; off < len(s.pool); off += pageSize {
			binary.LittleEndian.PutUint64(s.pool[off+48:], s.round)
		}
		for p := s.pool[:min(size, len(s.pool))]; len(p) > 0; {
			n := min(len(p), 1<<20)
			if _, err := w.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
			size -= n
		}
	}
	return nil
}

func benchVault(b *testing.B, discard bool) *vault.Vault {
	b.Helper()
	var store blob.Store
	store, err := dirstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if discard {
		store = discardStore{store}
	}
	v, err := vault.Init(b.Context(), store, testMaster)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// discardStore drops chunks instead of storing them, to measure the
// writer's pipeline without the cost of a store.
type discardStore struct{ blob.Store }

func (d discardStore) Stat(ctx context.Context, key string) (blob.Info, error) {
	if isChunkData(key) {
		return blob.Info{}, blob.ErrNotExist
	}
	return d.Store.Stat(ctx, key)
}

func (d discardStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if isChunkData(key) {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return d.Store.Put(ctx, key, r, size)
}

// BenchmarkWriter stores 1 GiB streams of SQL-like pages in a directory
// store: chunking, hashing, compression, sealing and writing files (synced).
// The discard case drops the sealed chunks instead, measuring the pipeline
// alone. Every case writes the same pages, so that zstd, s2 and none
// compare on the same data.
func BenchmarkWriter(b *testing.B) {
	for _, bc := range []struct {
		name    string
		opts    vault.WriterOptions
		discard bool
	}{
		{"dir/zstd", vault.WriterOptions{}, false},
		{"dir/s2", vault.WriterOptions{Compression: vault.S2}, false},
		{"dir/nocompress", vault.WriterOptions{Compression: vault.Uncompressed}, false},
		{"discard/zstd", vault.WriterOptions{}, true},
		{"discard/s2", vault.WriterOptions{Compression: vault.S2}, true},
		{"discard/nocompress", vault.WriterOptions{Compression: vault.Uncompressed}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := benchVault(b, bc.discard)
			src := newPageStream()
			b.SetBytes(benchStreamSize)
			var stored, chunks int64
			for b.Loop() {
				w := v.NewWriter(b.Context(), bc.opts)
				if err := src.writeTo(w, benchStreamSize); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				res := w.Result()
				// Only the last chunk may repeat: if it is shorter than a
				// page it can miss the stamp.
				if res.NewBytes < benchStreamSize-8192 {
					b.Fatalf("only %d of %d bytes new", res.NewBytes, benchStreamSize)
				}
				stored += res.StoredBytes
				chunks += int64(len(res.Chunks))
			}
			b.ReportMetric(float64(b.N)*benchStreamSize/float64(stored), "ratio")
			b.ReportMetric(float64(b.N)*benchStreamSize/float64(chunks)/(1<<20), "MiB/chunk")
		})
	}
}

// BenchmarkReader reads a 1 GiB stream of SQL-like pages back from a
// directory store, verifying every chunk, stored with each compression
// (the same pages in each case).
func BenchmarkReader(b *testing.B) {
	for _, c := range []vault.Compression{vault.Zstd, vault.S2, vault.Uncompressed} {
		b.Run(string(c), func(b *testing.B) {
			v := benchVault(b, false)
			w := v.NewWriter(b.Context(), vault.WriterOptions{Compression: c})
			if err := newPageStream().writeTo(w, benchStreamSize); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			chunks := w.Result().Chunks
			b.SetBytes(benchStreamSize)
			for b.Loop() {
				r := v.NewReader(b.Context(), chunks)
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != benchStreamSize {
					b.Fatalf("read %d bytes, %v", n, err)
				}
			}
		})
	}
}

// countStore counts the chunks fetched from a store.
type countStore struct {
	blob.Store
	gets atomic.Int64
}

func (c *countStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if isChunkData(key) {
		c.gets.Add(1)
	}
	return c.Store.Get(ctx, key)
}

func (c *countStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if isChunkData(key) {
		c.gets.Add(1)
	}
	return c.Store.GetRange(ctx, key, off, length)
}

// BenchmarkReaderAt reads a 256 MiB stream of SQL-like pages back from a
// directory store as RESTORE FROM URL does, in ascending ranges of 10 MiB
// with 4 in flight, and, for comparison, sequentially with NewReader. It
// reports the throughput of each and how many times the ranged reads
// fetched each chunk on average (1 when read-ahead is never wasted).
func BenchmarkReaderAt(b *testing.B) {
	const (
		size     = 256 << 20
		rangeLen = 10 << 20
		inFlight = 4
	)
	dir, err := dirstore.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	store := &countStore{Store: dir}
	v, err := vault.Init(b.Context(), store, testMaster)
	if err != nil {
		b.Fatal(err)
	}
	w := v.NewWriter(b.Context(), vault.WriterOptions{})
	if err := newPageStream().writeTo(w, size); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	chunks := w.Result().Chunks

	var rangedTime, seqTime time.Duration
	var gets int64
	for b.Loop() {
		start := time.Now()
		before := store.gets.Load()
		r := v.NewReaderAt(b.Context(), chunks, vault.ReaderAtOptions{})
		var next atomic.Int64 // the next range to read, as SQL Server issues them
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				buf := make([]byte, rangeLen)
				for {
					off := next.Add(rangeLen) - rangeLen
					if off >= size {
						return
					}
					n, err := r.ReadAt(buf, off)
					if err != nil && !(err == io.EOF && off+int64(n) == size) {
						b.Errorf("ReadAt(%d) = %d, %v", off, n, err)
						return
					}
				}
			})
		}
		wg.Wait()
		r.Close()
		rangedTime += time.Since(start)
		gets += store.gets.Load() - before

		start = time.Now()
		sr := v.NewReader(b.Context(), chunks)
		n, err := io.Copy(io.Discard, sr)
		sr.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		seqTime += time.Since(start)
	}
	mb := float64(b.N) * size / 1e6
	b.ReportMetric(mb/rangedTime.Seconds(), "ranged-MB/s")
	b.ReportMetric(mb/seqTime.Seconds(), "sequential-MB/s")
	b.ReportMetric(float64(gets)/float64(b.N)/float64(len(chunks)), "fetches/chunk")
}
