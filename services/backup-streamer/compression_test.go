package streamer_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The sealed header's flags byte and its compression bits, as the vault
// lays them out (pkg/vault/vault.go).
const (
	flagsByte = 1
	flagZstd  = 1 << 0
	flagS2    = 1 << 1
)

// chunkIDs returns the ids of every chunk in the vault.
func (e *env) chunkIDs() map[string]bool {
	e.t.Helper()
	ids := map[string]bool{}
	err := e.vault.ListChunks(context.Background(), func(c vault.ChunkInfo) error {
		ids[c.ID] = true
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// newChunkFlags counts, by the flags of their sealed header, the chunks
// of recovery point rp that were not in the vault before (ids in before):
// those its backup stored.
func (e *env) newChunkFlags(rp *cofferv1.RecoveryPoint, before map[string]bool) map[byte]int {
	e.t.Helper()
	ctx := context.Background()
	m, err := e.vault.GetManifest(ctx, rp.GetManifest())
	if err != nil {
		e.t.Fatal(err)
	}
	flags := map[byte]int{}
	for _, c := range m.Chunks {
		if before[c.ID] {
			continue
		}
		loc, ok := e.vault.Locate(c.ID)
		if !ok {
			e.t.Fatalf("chunk %s is not in the vault's index", c.ID)
		}
		rc, err := e.store.GetRange(ctx, loc.Key, loc.Offset, flagsByte+1)
		if err != nil {
			e.t.Fatal(err)
		}
		head, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || len(head) != flagsByte+1 {
			e.t.Fatalf("read the header of chunk %s: %d bytes, %v", c.ID, len(head), err)
		}
		flags[head[flagsByte]]++
	}
	return flags
}

// TestBackupCompression: the streamer stores a backup's chunks compressed
// as its request says, in disk mode and in URL mode: s2, none, zstd; work
// queued before vault_compression (the flag alone) as it always was; and a
// name it does not know with zstd, the backup succeeding. Each case backs
// up a database of its own, and only the chunks its backup stored count.
func TestBackupCompression(t *testing.T) {
	tests := []struct {
		name string
		edit func(*cofferv1.BackupRequested)
		want byte // the flags of every compressed chunk; 0 wants none compressed
	}{
		{"s2", func(r *cofferv1.BackupRequested) { r.VaultCompression = "s2" }, flagS2},
		{"none", func(r *cofferv1.BackupRequested) { r.VaultCompression, r.Compression = "none", false }, 0},
		{"zstd", func(r *cofferv1.BackupRequested) { r.VaultCompression = "zstd" }, flagZstd},
		{"flag only, on", func(r *cofferv1.BackupRequested) { r.VaultCompression = "" }, flagZstd},
		{"flag only, off", func(r *cofferv1.BackupRequested) { r.VaultCompression, r.Compression = "", false }, 0},
		{"unknown name", func(r *cofferv1.BackupRequested) { r.VaultCompression = "lz4" }, flagZstd},
	}
	modes := []struct {
		name   string
		env    func(t *testing.T) *env
		device string // how the backup's device in msdb starts; empty: the staging directory
	}{
		{"disk", func(t *testing.T) *env {
			e := newEnv(t, envOptions{})
			e.startCommitter()
			e.startStreamer(e.streamerConfig())
			return e
		}, ""},
		{"url", func(t *testing.T) *env { e, _, _ := urlEnv(t); return e }, "s3://"},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := mode.env(t)
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					db := fmt.Sprintf("Compressed %d", i)
					e.createFilled(db, 1024)
					before := e.chunkIDs()
					jid := e.backupWith(t.Context(), instName, db, full, tt.edit)
					e.mustSucceed(jid)
					rp := e.mustRecoveryPoint(db, jid)
					var device string
					if err := e.sqlDB().QueryRowContext(t.Context(), "SELECT TOP 1 mf.physical_device_name FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id ORDER BY bs.backup_set_id DESC").Scan(&device); err != nil {
						t.Fatal(err)
					}
					if want := cmp.Or(mode.device, e.staging); !strings.HasPrefix(device, want) {
						t.Fatalf("backed up to %q; want %s mode (%s...)", device, mode.name, want)
					}
					if rp.GetNewBytes() < rp.GetSize()/2 {
						t.Fatalf("the backup stored %d new bytes of %d; the test needs most of them new", rp.GetNewBytes(), rp.GetSize())
					}
					got := e.newChunkFlags(rp, before)
					for _, f := range slices.Sorted(maps.Keys(got)) {
						if f != 0 && f != tt.want {
							t.Errorf("%d new chunks with flags %#x; want compressed chunks only with %#x (all: %v)", got[f], f, tt.want, got)
						}
					}
					if tt.want != 0 && got[tt.want] == 0 {
						t.Errorf("no new chunk with flags %#x (all: %v)", tt.want, got)
					}
					t.Logf("new chunks by flags: %v; %d bytes stored for %d new", got, rp.GetStoredBytes(), rp.GetNewBytes())
				})
			}
		})
	}
}
