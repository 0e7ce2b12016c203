package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/pkg/blob"
)

// The vault's format, in the object "config": which layout new data is
// written in, and how streams are cut into chunks.
//
//   - Format 1 (no config object; coffer before packs): one object per
//     chunk, chunks/<xx>/<id>, cut at about 1 MiB.
//
//   - Format 2: chunks are written into packs (packs/<xx>/<id>) listed by
//     index objects (index/<id>); chunks of format 1 stay where they are and
//     are read, deduplicated against and collected as before. A vault
//     created in format 2 cuts chunks at about 256 KiB (512 KiB in the first
//     format 2 vaults, which keep it); one upgraded from
//     format 1 keeps cutting at 1 MiB, so that new backups still
//     deduplicate against the old ones.
//
//   - Format 3: format 2 in a store with S3 Object Lock (lock.go), whose
//     config names the retention mode. It is format 2's layout; the
//     number only makes a coffer that does not lock objects refuse to
//     write into the vault, rather than write what it would not lock.
//
// Opening a format 1 vault upgrades it: the config object is written, and
// nothing else changes.
const (
	configKey     = "config"
	formatPacks   = 2
	formatLocked  = 3
	maxConfigSize = 4 << 10
)

// vaultConfig is the config object, plain JSON: nothing in it is secret,
// and a value altered by someone with write access to the store can only
// change how new data is chunked (unknown values are refused).
type vaultConfig struct {
	Format int `json:"format"`
	// Chunking names the chunker's parameters: "fastcdc-1m" or
	// "fastcdc-512k" or "fastcdc-256k" (chunkings).
	Chunking string `json:"chunking"`
	// ObjectLock, in format 3 only, is the retention mode ("GOVERNANCE"
	// or "COMPLIANCE") every recovery point's objects are locked in.
	ObjectLock blob.RetentionMode `json:"object_lock,omitempty"`
}

// loadConfig reads the vault's config, writing the upgrade from format 1
// when there is none.
func loadConfig(ctx context.Context, store blob.Store) (vaultConfig, error) {
	raw, err := readSmall(ctx, store, configKey, maxConfigSize)
	if errors.Is(err, blob.ErrNotExist) {
		cfg := vaultConfig{Format: formatPacks, Chunking: chunking1M}
		return cfg, putConfig(ctx, store, cfg)
	}
	if err != nil {
		return vaultConfig{}, fmt.Errorf("read config: %w", err)
	}
	var cfg vaultConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return vaultConfig{}, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	if cfg.Format != formatPacks && cfg.Format != formatLocked {
		return vaultConfig{}, fmt.Errorf("vault format %d: this coffer reads formats 1 to %d; use a newer coffer", cfg.Format, formatLocked)
	}
	if _, ok := chunkings[cfg.Chunking]; !ok {
		return vaultConfig{}, fmt.Errorf("%w: config: unknown chunking %q", ErrCorrupt, cfg.Chunking)
	}
	if err := checkLockConfig(ctx, store, cfg); err != nil {
		return vaultConfig{}, err
	}
	return cfg, nil
}

func putConfig(ctx context.Context, store blob.Store, cfg vaultConfig) error {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := store.Put(ctx, configKey, bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}
