package vault

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/pkg/blob"
)

// CheckMode chooses how deep [Vault.Check] looks.
type CheckMode int

const (
	// CheckFast lists the vault's chunks and checks that every chunk a
	// manifest names is there, with the stored size the manifest recorded.
	// It reads no chunk, so it costs little however large the vault, but
	// it cannot see a chunk altered without changing its size.
	CheckFast CheckMode = iota
	// CheckFull does what CheckFast does, then reads every chunk a manifest
	// names, once however many manifests name it, and verifies it as a
	// restore would: it authenticates under the vault's keys, and its
	// plaintext hashes to its id and has the size the manifests recorded.
	// It reads the whole vault.
	CheckFull
)

// String returns "fast" or "full", for logs and reports.
func (m CheckMode) String() string {
	switch m {
	case CheckFast:
		return "fast"
	case CheckFull:
		return "full"
	}
	return fmt.Sprintf("CheckMode(%d)", int(m))
}

// CheckOptions tunes [Vault.Check]. The zero value asks for a fast check.
type CheckOptions struct {
	// Mode is how deep to look.
	Mode CheckMode
	// Workers is how many chunks a full check reads and verifies at once.
	// Zero means 4. A store with high latency (S3 over a WAN) needs more
	// to keep its bandwidth busy; each worker holds up to two chunk
	// buffers, of at most 4 MiB each.
	Workers int
	// OnProgress, if not nil, is called each time chunks have been
	// checked, with how many of the distinct chunks the manifests name are
	// done and how many there are. A fast check counts chunks as the
	// listing reaches them, a full check as it finishes verifying them.
	// Calls are never concurrent, done never decreases, and the last call
	// has done equal to total; there is none if no manifest names a chunk.
	// Check waits for OnProgress, which should return quickly.
	OnProgress func(done, total int)
}

// defaultCheckWorkers is the default of CheckOptions.Workers.
const defaultCheckWorkers = 4

// Damage is one problem [Vault.Check] found: a chunk that is missing or
// damaged, or a manifest that cannot be read.
type Damage struct {
	// Chunk is the damaged chunk's id; empty for a manifest-level problem.
	Chunk string
	// Manifest is the id of a manifest that cannot be read or
	// authenticated; empty for a damaged chunk.
	Manifest string
	// Problem says what is wrong. It is "missing" for a chunk not in the
	// vault; "wrong size: " and details for a chunk whose stored size, or
	// whose plaintext size, differs from what a manifest recorded;
	// "corrupt: " and details for a chunk that fails verification; and
	// "manifest unreadable: " and details for a manifest.
	Problem string
	// Manifests are the ids of the manifests, that is the recovery points,
	// the damage makes unrestorable, sorted: every manifest that needs the
	// chunk (for "wrong size", those that recorded the size found wrong),
	// or, for a manifest that cannot be read, that manifest.
	Manifests []string
}

// CheckReport is what [Vault.Check] found.
type CheckReport struct {
	// Mode is the mode the check ran in.
	Mode CheckMode
	// Manifests counts the manifests checked, readable or not.
	Manifests int
	// Chunks counts the distinct chunks the readable manifests name.
	Chunks int
	// BytesRead counts the stored bytes of the chunks a full check read;
	// it is zero for a fast check.
	BytesRead int64
	// Damaged lists the problems found, sorted by chunk id, then manifest
	// id (so unreadable manifests come first), then problem.
	Damaged []Damage
	// Unreferenced counts chunks in the vault that no readable manifest
	// names: garbage left by deleted recovery points and failed backups,
	// or chunks of a backup being written during the check. It is not
	// damage. The chunks of a manifest that cannot be read count here too,
	// so a report with damage must not drive garbage collection.
	Unreferenced int
}

// Affected returns the ids of the manifests any damage touches: the
// recovery points that cannot be restored. They are sorted, each once.
func (r *CheckReport) Affected() []string {
	var ids []string
	for _, d := range r.Damaged {
		ids = append(ids, d.Manifests...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// OK reports whether the check found no damage.
func (r *CheckReport) OK() bool { return len(r.Damaged) == 0 }

// Check checks the vault's integrity: that every manifest can be read and
// authenticated, and that every chunk the manifests name is in the vault,
// as deep as opt.Mode says. Damage is listed in the report, with the
// recovery points it affects, and the check goes on past it; Check returns
// an error only when the check itself cannot run or finish: the store
// fails (to list, or to read an object for a reason other than its
// absence), or ctx ends.
//
// Check holds no chunk data beyond its workers' buffers, and, for each
// distinct chunk the manifests name, a small record of the manifests that
// name it; it reads the manifests one at a time. It sees the vault as it
// is while it runs: a manifest committed meanwhile may be missed, and the
// chunks of a backup being written count as unreferenced.
func (v *Vault) Check(ctx context.Context, opt CheckOptions) (*CheckReport, error) {
	if opt.Mode != CheckFast && opt.Mode != CheckFull {
		return nil, fmt.Errorf("check vault: unknown mode %v", opt.Mode)
	}
	if opt.Workers <= 0 {
		opt.Workers = defaultCheckWorkers
	}
	c := &checker{
		v:      v,
		opt:    opt,
		chunks: make(map[[32]byte]*checkEntry),
		report: &CheckReport{Mode: opt.Mode},
	}
	if err := c.readManifests(ctx); err != nil {
		return nil, fmt.Errorf("check vault: %w", err)
	}
	if err := c.listChunks(ctx); err != nil {
		return nil, fmt.Errorf("check vault: %w", err)
	}
	if opt.Mode == CheckFull {
		if err := c.readChunks(ctx); err != nil {
			return nil, fmt.Errorf("check vault: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check vault: %w", err)
	}
	slices.SortFunc(c.report.Damaged, func(a, b Damage) int {
		return cmp.Or(
			cmp.Compare(a.Chunk, b.Chunk),
			cmp.Compare(a.Manifest, b.Manifest),
			cmp.Compare(a.Problem, b.Problem),
		)
	})
	return c.report, nil
}

// checker is the state of one Check.
type checker struct {
	v         *Vault
	opt       CheckOptions
	manifests []string // ids of the manifests checked, in lexical order
	chunks    map[[32]byte]*checkEntry
	report    *CheckReport

	mu   sync.Mutex // guards report and done once workers run
	done int        // chunks checked, for OnProgress
}

// checkEntry is what Check knows of one chunk the manifests name.
type checkEntry struct {
	// size and stored are the plaintext and stored sizes recorded by the
	// first manifest naming the chunk; stored is 0 if it recorded none.
	size, stored int64
	// manifests are the indexes in checker.manifests of the manifests
	// naming the chunk, ascending.
	manifests []int32
	// others are the manifests that recorded other sizes than the first,
	// which is rare: a manifest that recorded no stored size, or a chunk
	// lost and uploaded again differently (compressed or not) between
	// backups.
	others []checkExpect
	// present says the listing showed the chunk, with stored size listed
	// (negative if the store did not give it).
	present bool
	listed  int64
}

// checkExpect is the sizes one manifest recorded for a chunk.
type checkExpect struct {
	manifest     int32
	size, stored int64
}

// expect returns the sizes manifest m recorded for the chunk.
func (e *checkEntry) expect(m int32) (size, stored int64) {
	for _, o := range e.others {
		if o.manifest == m {
			return o.size, o.stored
		}
	}
	return e.size, e.stored
}

// readManifests reads every manifest, recording the chunks each names or
// the damage that keeps it from being read.
func (c *checker) readManifests(ctx context.Context) error {
	err := c.v.ListManifests(ctx, func(id string) error {
		c.manifests = append(c.manifests, id)
		return nil
	})
	if err != nil {
		return err
	}
	kept := c.manifests[:0]
	for _, id := range c.manifests {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := c.v.getManifest(ctx, id)
		switch {
		case errors.Is(err, blob.ErrNotExist):
			continue // deleted since the listing
		case errors.Is(err, ErrCorrupt):
			c.manifestDamage(id, corruptDetail(err))
			kept = append(kept, id)
			continue
		case err != nil:
			return fmt.Errorf("read manifest %s: %w", id, err)
		}
		idx := int32(len(kept))
		kept = append(kept, id)
		c.addManifest(idx, m)
	}
	c.manifests = kept
	c.report.Manifests = len(kept)
	c.report.Chunks = len(c.chunks)
	return nil
}

// addManifest records the chunks of manifest m, which is
// c.manifests[idx].
func (c *checker) addManifest(idx int32, m *Manifest) {
	var sum [32]byte
	invalid := false
	for i, ref := range m.Chunks {
		if !validChunkID(ref.ID) {
			// Unreachable through PutManifest, which refuses such a
			// manifest; reported once, the rest of the chunks checked.
			if !invalid {
				c.manifestDamage(m.ID, fmt.Sprintf("chunk %d has an invalid id", i))
				invalid = true
			}
			continue
		}
		hex.Decode(sum[:], []byte(ref.ID))
		e := c.chunks[sum]
		if e == nil {
			e = &checkEntry{size: ref.Size, stored: ref.StoredSize}
			c.chunks[sum] = e
		} else if e.manifests[len(e.manifests)-1] == idx {
			continue // named again by the same manifest
		} else if ref.Size != e.size || ref.StoredSize != e.stored {
			e.others = append(e.others, checkExpect{idx, ref.Size, ref.StoredSize})
		}
		e.manifests = append(e.manifests, idx)
	}
}

// listChunks lists the vault's chunks, marking those the manifests name
// present and counting the others, then reports the missing ones and
// those whose stored size differs from what their manifests recorded.
func (c *checker) listChunks(ctx context.Context) error {
	total := len(c.chunks)
	fast := c.opt.Mode == CheckFast
	var sum [32]byte
	err := c.v.ListChunks(ctx, func(info ChunkInfo) error {
		if err := ctx.Err(); err != nil {
			return err // the store may check only now and then
		}
		hex.Decode(sum[:], []byte(info.ID))
		e := c.chunks[sum]
		if e == nil {
			c.report.Unreferenced++
			return nil
		}
		// a chunk stored twice: the copy of the size its manifests expect
		if !e.present || info.StoredSize == e.stored {
			e.listed = info.StoredSize
		}
		if fast && !e.present {
			c.progress(1, total)
		}
		e.present = true
		return nil
	})
	if err != nil {
		return err
	}
	missing := 0
	for sum, e := range c.chunks {
		if !e.present {
			missing++
			c.chunkDamage(sum, "missing", e.manifests)
			continue
		}
		if e.listed < 0 {
			continue // the store did not say
		}
		c.sizeDamage(sum, e, func(m int32) int64 {
			_, stored := e.expect(m)
			if stored == 0 {
				return e.listed // recorded none: nothing to compare
			}
			return stored
		}, e.listed, "stored object is %d bytes; the manifest expects %d")
	}
	if missing > 0 {
		// In a fast check they are done now; a full check will not read
		// them.
		c.progress(missing, total)
	}
	return nil
}

// sizeDamage reports chunk sum for each size that manifests naming it
// recorded, as want returns it, that is not got. format has two verbs,
// for got and the expected size.
func (c *checker) sizeDamage(sum [32]byte, e *checkEntry, want func(int32) int64, got int64, format string) {
	if len(e.others) == 0 {
		// The common case: every manifest recorded the same sizes.
		if w := want(e.manifests[0]); w != got {
			c.chunkDamage(sum, "wrong size: "+fmt.Sprintf(format, got, w), e.manifests)
		}
		return
	}
	wrong := make(map[int64][]int32)
	for _, m := range e.manifests {
		if w := want(m); w != got {
			wrong[w] = append(wrong[w], m)
		}
	}
	for w, ms := range wrong {
		c.chunkDamage(sum, "wrong size: "+fmt.Sprintf(format, got, w), ms)
	}
}

// readChunks reads and verifies every chunk the listing showed, with
// c.opt.Workers workers.
func (c *checker) readChunks(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var once sync.Once
	var first error
	fail := func(err error) {
		once.Do(func() { first = err })
		cancel(err)
	}
	type job struct {
		sum [32]byte
		e   *checkEntry
	}
	jobs := make(chan job)
	total := len(c.chunks)
	var wg sync.WaitGroup
	for range c.opt.Workers {
		wg.Go(func() {
			bufs := &chunkBufs{}
			for j := range jobs {
				if err := c.verifyChunk(ctx, j.sum, j.e, total, bufs); err != nil {
					fail(err)
				}
			}
		})
	}
feed:
	for sum, e := range c.chunks {
		if !e.present {
			continue
		}
		select {
		case jobs <- job{sum, e}:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// verifyChunk reads and verifies one chunk with loadChunk, as a restore
// would, recording any damage. It returns an error only if the chunk
// could not be checked.
func (c *checker) verifyChunk(ctx context.Context, sum [32]byte, e *checkEntry, total int, bufs *chunkBufs) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := hex.EncodeToString(sum[:])
	// The plaintext size is compared below, against every manifest's.
	plain, err := c.v.loadChunk(ctx, id, -1, max(e.listed, 0), bufs)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	read := true
	switch {
	case errors.Is(err, blob.ErrNotExist):
		c.chunkDamage(sum, "missing", e.manifests) // deleted since the listing
		read = false
	case errors.Is(err, ErrCorrupt):
		c.chunkDamage(sum, "corrupt: "+corruptDetail(err), e.manifests)
	case err != nil:
		return err
	default:
		c.sizeDamage(sum, e, func(m int32) int64 {
			size, _ := e.expect(m)
			return size
		}, int64(len(plain)), "holds %d bytes of data; the manifest expects %d")
	}
	if read && e.listed > 0 {
		c.mu.Lock()
		c.report.BytesRead += e.listed
		c.mu.Unlock()
	}
	c.progress(1, total)
	return nil
}

// progress counts n more chunks checked and tells OnProgress.
func (c *checker) progress(n, total int) {
	if c.opt.OnProgress == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	c.opt.OnProgress(c.done, total)
}

// chunkDamage records a problem with chunk sum affecting manifests.
func (c *checker) chunkDamage(sum [32]byte, problem string, manifests []int32) {
	ids := make([]string, len(manifests))
	for i, m := range manifests {
		ids[i] = c.manifests[m]
	}
	slices.Sort(ids) // already, unless sizeDamage grouped them
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Damaged = append(c.report.Damaged, Damage{
		Chunk:     hex.EncodeToString(sum[:]),
		Problem:   problem,
		Manifests: ids,
	})
}

// manifestDamage records that manifest id cannot be used.
func (c *checker) manifestDamage(id, detail string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Damaged = append(c.report.Damaged, Damage{
		Manifest:  id,
		Problem:   "manifest unreadable: " + detail,
		Manifests: []string{id},
	})
}

// corruptDetail returns what is wrong according to err, an error matching
// ErrCorrupt, without the chunk id or ErrCorrupt's own text, which a
// Damage says otherwise.
func corruptDetail(err error) string {
	var ce *ChunkError
	if errors.As(err, &ce) {
		err = ce.Err
	}
	return strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")
}
