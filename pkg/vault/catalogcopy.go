package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
)

// catalogPrefix holds the vault's copies of catalog records that no
// manifest carries (the policies), sealed as manifests are.
const catalogPrefix = "catalog/"

func catalogName(name string) string { return "catalog/" + name }

// PutCatalogCopy stores data, sealed, as the vault's copy of the catalog
// records called name (a manifest id), replacing any earlier copy. It
// holds what a rebuild of a lost catalog needs beyond the recovery points,
// which their manifests carry. Garbage collection and checks ignore it.
func (v *Vault) PutCatalogCopy(ctx context.Context, name string, data []byte) error {
	mc, err := checkManifest(name, &Manifest{ID: name, CreatedAt: time.Now().UTC().Truncate(time.Microsecond), Meta: data})
	if err == nil {
		err = v.storeManifest(ctx, catalogPrefix+name, catalogName(name), mc)
	}
	if err != nil {
		return fmt.Errorf("put catalog copy %s: %w", name, err)
	}
	return nil
}

// GetCatalogCopy reads the copy PutCatalogCopy stored as name. A missing
// copy gives an error matching blob.ErrNotExist; one that was altered, or
// stored under another name, one matching ErrCorrupt.
func (v *Vault) GetCatalogCopy(ctx context.Context, name string) ([]byte, error) {
	err := ValidateManifestID(name)
	var m *Manifest
	if err == nil {
		m, err = v.loadManifest(ctx, catalogPrefix+name, catalogName(name), name)
	}
	if err != nil {
		return nil, fmt.Errorf("get catalog copy %s: %w", name, err)
	}
	return m.Meta, nil
}

// DeleteCatalogCopy deletes the copy PutCatalogCopy stored as name; one
// that is not there is no error.
func (v *Vault) DeleteCatalogCopy(ctx context.Context, name string) error {
	err := ValidateManifestID(name)
	if err == nil {
		err = v.store.Delete(ctx, catalogPrefix+name)
	}
	if err != nil && !errors.Is(err, blob.ErrNotExist) {
		return fmt.Errorf("delete catalog copy %s: %w", name, err)
	}
	return nil
}

// ListCatalogCopies calls fn with the name of each catalog copy whose
// name begins with prefix.
func (v *Vault) ListCatalogCopies(ctx context.Context, prefix string, fn func(name string) error) error {
	if err := v.listIDs(ctx, catalogPrefix, prefix, fn); err != nil {
		return fmt.Errorf("list catalog copies: %w", err)
	}
	return nil
}
