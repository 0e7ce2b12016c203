package vault_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

var (
	raceRounds = flag.Int("collect-race.rounds", 40, "TestCollectRace: backups each writer takes")
	raceBudget = flag.Duration("collect-race.budget", 12*time.Second, "TestCollectRace: time after which writers stop early (half that on MinIO)")
	raceUnsafe = flag.Bool("collect-race.unsafe", false, "TestCollectRace: writers ignore condemned chunks, which must make the test fail")
)

// TestCollectRace races garbage collection against backups, each party
// in a process of its own (a *vault.Vault of its own on one store):
// writers back up streams made mostly of blocks that earlier backups
// held too, many of them deleted since, so that they deduplicate against
// chunks garbage collection condemned or is about to delete; each
// commits through a draft, as the streamer and committer do, and now and
// then a backup fails halfway. Meanwhile a collector deletes all but the
// newest recovery points and collects, over and over, repacking packs
// that are partly garbage. No commit may fail, and every recovery point
// must read back byte for byte, just after its commit and at the end.
//
// With -collect-race.unsafe the writers deduplicate against condemned
// chunks, as if collection had no condemnation: then commits fail.
//
// Without -short (make test's long run), and unless the flags say
// otherwise, each writer takes 1,000 backups: 3,000 backups raced against
// hundreds of collections on a directory, and 750 on MinIO.
func TestCollectRace(t *testing.T) {
	rounds, budget := *raceRounds, *raceBudget
	if !testing.Short() && !flagSet("collect-race.rounds") && !flagSet("collect-race.budget") {
		rounds, budget = 1000, 5*time.Minute
	}
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		rounds, budget, dir := rounds, budget, t.Name() == "TestCollectRace/dirstore"
		if !dir {
			// a store over HTTP is slower: the same races, fewer of them
			rounds, budget = rounds/4, budget/2
		}
		testCollectRace(t, newStore(t), rounds, budget, dir)
	})
}

// testCollectRace runs TestCollectRace on store: rounds backups by each
// writer, or as many as budget allows. With busy set, it also checks that
// the collections were busy enough to have met each race.
func testCollectRace(t *testing.T, store blob.Store, rounds int, budget time.Duration, busy bool) {
	const (
		writers   = 3
		lanes     = 2 // backups at once in each writer's process
		blockSize = 32 << 10
		poolSize  = 40 // blocks backups are made of
		perStream = 16 // pool blocks in each backup, and one new block
		keep      = 3  // newest recovery points the collector keeps
	)
	ctx := t.Context()
	open := func() *vault.Vault {
		v := openVault(t, store)
		vault.SetSmallChunks(v)
		return v
	}
	initVault(t, store)
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([][]byte, poolSize)
	for i := range pool {
		pool[i] = randomBytes(rng, blockSize)
	}

	committer, collector := open(), open()
	var (
		mu       sync.Mutex
		streams  = map[string][]byte{} // committed recovery points, by id
		order    []string              // in commit order
		failures atomic.Int64
		done     = make(chan struct{})
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	deadline := time.Now().Add(budget)
	commits := make(chan struct{}, 1) // a recovery point was committed

	// a writer's backup: session, writer, draft, then the commit and a
	// read back by the committer's process
	backup := func(v *vault.Vault, id string, data []byte, abandon bool) {
		sess, err := v.OpenSession(ctx, vault.SessionOptions{Refresh: 20 * time.Millisecond, Lease: 10 * time.Second})
		if err != nil {
			fail("%s: open session: %v", id, err)
			return
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w := v.NewWriter(wctx, vault.WriterOptions{Session: sess, PackSize: 32 << 10, Compression: vault.Uncompressed, Workers: 1, InFlight: 1, Uploads: 1})
		for p := data; len(p) > 0; {
			n := min(len(p), 50<<10)
			if _, err := w.Write(p[:n]); err != nil {
				fail("%s: write: %v", id, err)
				break
			}
			p = p[n:]
			if abandon && len(p) < len(data)/2 {
				cancel() // a backup that fails halfway: its chunks are garbage
				w.Close()
				sess.Close(ctx)
				return
			}
		}
		if err := w.Close(); err != nil {
			fail("%s: close writer: %v", id, err)
			sess.Close(ctx)
			return
		}
		res := w.Result()
		if err := v.PutDraft(ctx, id, &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
			fail("%s: put draft: %v", id, err)
		}
		if err := sess.Close(ctx); err != nil {
			fail("%s: close session: %v", id, err)
		}
		m, err := committer.GetDraft(ctx, id)
		if err != nil {
			fail("%s: get draft: %v", id, err)
			return
		}
		if err := committer.PutManifest(ctx, id, m); err != nil {
			fail("%s: commit: %v", id, err)
			return
		}
		if err := committer.DeleteDraft(ctx, id); err != nil {
			fail("%s: delete draft: %v", id, err)
		}
		if got, err := read(t, committer, m.Chunks); err != nil || !bytes.Equal(got, data) {
			fail("%s: read back after its commit: %d of %d bytes, %v", id, len(got), len(data), err)
			return
		}
		mu.Lock()
		streams[id] = data
		order = append(order, id)
		mu.Unlock()
		select {
		case commits <- struct{}{}:
		default:
		}
	}

	var wg sync.WaitGroup
	var taken atomic.Int64
	var writerVaults []*vault.Vault
	for k := range writers * lanes {
		// each writer process runs lanes backups at once, so that a
		// session opens while another of its process is open, as in a
		// streamer with several workers, and may keep the index its
		// process holds
		if k%lanes == 0 {
			writerVaults = append(writerVaults, open())
		}
		v := writerVaults[k/lanes]
		if *raceUnsafe {
			vault.IgnoreCondemned(v)
		}
		seed := uint64(k + 10)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, seed))
			for r := range (rounds + lanes - 1) / lanes {
				if time.Now().After(deadline) || failures.Load() > 0 && !*raceUnsafe {
					return
				}
				var data []byte
				fresh := rng.IntN(perStream + 1)
				for i := range perStream + 1 {
					if i == fresh {
						data = append(data, randomBytes(rng, blockSize)...)
						continue
					}
					data = append(data, pool[rng.IntN(poolSize)]...)
				}
				backup(v, fmt.Sprintf("w%d-%d-r%03d", k/lanes, k%lanes, r), data, rng.IntN(10) == 0)
				taken.Add(1)
			}
		})
	}

	// two collectors, as two committers would run
	var (
		total       vault.CollectStats
		collections int
		statsMu     sync.Mutex
	)
	add := func(st vault.CollectStats) {
		statsMu.Lock()
		defer statsMu.Unlock()
		collections++
		total.Chunks += st.Chunks
		total.Bytes += st.Bytes
		total.Repacked += st.Repacked
		total.Deleted += st.Deleted
		total.Orphans += st.Orphans
		total.Condemned += st.Condemned
		total.Processed += st.Processed
		total.Waiting += st.Waiting
	}
	var collecting sync.WaitGroup
	var gaveWay atomic.Int64
	for _, collector := range []*vault.Vault{collector, open()} {
		collecting.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				var drop []string
				if len(order) > keep {
					drop = slices.Clone(order[:len(order)-keep])
					order = order[len(order)-keep:]
				}
				for _, id := range drop {
					delete(streams, id)
				}
				mu.Unlock()
				for _, id := range drop {
					if err := collector.DeleteManifest(ctx, id); err != nil {
						fail("delete manifest %s: %v", id, err)
					}
				}
				st, err := collector.Collect(ctx, vault.CollectOptions{})
				if errors.Is(err, vault.ErrCollecting) {
					gaveWay.Add(1)
					select { // rather than try again at once
					case <-commits:
					case <-done:
					}
					continue
				}
				if err != nil {
					fail("collect: %v", err)
					return
				}
				add(st)
			}
		})
	}
	wg.Wait()
	close(done)
	collecting.Wait()
	var reused int64
	for _, v := range writerVaults {
		reused += vault.IndexReused(v)
	}
	t.Logf("%d backups (%d sessions kept their process's index), %d collections (%d gave way to another): %+v",
		taken.Load(), reused, collections, gaveWay.Load(), total)
	if busy && reused == 0 {
		t.Errorf("no session kept its process's index: the race did not meet that path")
	}
	if failures.Load() > 0 {
		t.Fatalf("%d failures", failures.Load())
	}

	// what is left: collected twice more, then every recovery point reads
	// back, and nothing but what they need remains
	for range 2 {
		st, err := collector.Collect(ctx, vault.CollectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		add(st)
	}
	if busy && (total.Repacked == 0 || total.Processed == 0 || total.Waiting == 0) {
		t.Errorf("collections %+v: want packs repacked, generations processed, and some waiting for writers", total)
	}
	last := open()
	for id, data := range streams {
		m, err := last.GetManifest(ctx, id)
		if err != nil {
			t.Errorf("recovery point %s: %v", id, err)
			continue
		}
		if got, err := read(t, last, m.Chunks); err != nil || !bytes.Equal(got, data) {
			t.Errorf("recovery point %s at the end: %d of %d bytes, %v", id, len(got), len(data), err)
		}
	}
	r, err := last.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
	if err != nil || !r.OK() || r.Unreferenced != 0 || r.Manifests != len(streams) {
		t.Errorf("full check at the end: %+v, %v; want %d sound recovery points and no garbage", r, err, len(streams))
	}
	if n := countObjects(t, store, "sessions/"); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
