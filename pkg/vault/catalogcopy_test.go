package vault_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestCatalogCopy stores a copy of catalog records, reads it back and
// replaces it; a missing copy is ErrNotExist, a copy moved to another name
// or a manifest's place does not authenticate, and the vault check and
// garbage collection leave it alone.
func TestCatalogCopy(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	if _, err := v.GetCatalogCopy(ctx, "policies"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("no copy stored: %v; want ErrNotExist", err)
	}
	for _, data := range []string{`{"policies":[{"name":"gold"}]}`, `{"policies":[]}`} {
		if err := v.PutCatalogCopy(ctx, "policies", []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := v.GetCatalogCopy(ctx, "policies")
		if err != nil || string(got) != data {
			t.Fatalf("copy read back as %q (%v); want %q", got, err, data)
		}
	}
	putRaw(t, store, "catalog/other", getRaw(t, store, "catalog/policies"))
	if _, err := v.GetCatalogCopy(ctx, "other"); !errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("a copy moved to another name: %v; want ErrCorrupt", err)
	}
	putRaw(t, store, "manifests/policies", getRaw(t, store, "catalog/policies"))
	if _, err := v.GetManifest(ctx, "policies"); !errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("a copy moved to a manifest's place: %v; want ErrCorrupt", err)
	}
	if err := v.DeleteManifest(ctx, "policies"); err != nil {
		t.Fatal(err)
	}
	if err := v.PutCatalogCopy(ctx, "../x", nil); err == nil {
		t.Error("PutCatalogCopy took an invalid name")
	}
	rep, err := v.Check(ctx, vault.CheckOptions{Mode: vault.CheckFull})
	if err != nil || !rep.OK() || rep.Manifests != 0 {
		t.Errorf("vault check: %+v (%v); want no manifest and no damage", rep, err)
	}
	if _, err := v.Collect(ctx, vault.CollectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.GetCatalogCopy(ctx, "policies"); err != nil {
		t.Errorf("after garbage collection: %v", err)
	}

	// listed by prefix, and deleted (again: not an error)
	for _, name := range []string{"deleted.a", "deleted.b"} {
		if err := v.PutCatalogCopy(ctx, name, []byte(`"`+name+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []string {
		var names []string
		if err := v.ListCatalogCopies(ctx, "deleted.", func(name string) error {
			names = append(names, name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}
	if got := list(); !slices.Equal(got, []string{"deleted.a", "deleted.b"}) {
		t.Errorf("copies listed under deleted.: %q; want deleted.a and deleted.b", got)
	}
	for range 2 {
		if err := v.DeleteCatalogCopy(ctx, "deleted.a"); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(); !slices.Equal(got, []string{"deleted.b"}) {
		t.Errorf("after deleting deleted.a: %q; want deleted.b", got)
	}
	if _, err := v.GetCatalogCopy(ctx, "deleted.a"); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("a deleted copy: %v; want ErrNotExist", err)
	}
}
