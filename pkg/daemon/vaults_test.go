package daemon_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestVaultNames checks which names a vault may have: 2 to 50 letters,
// digits and hyphens, starting with a letter; the default's name is
// taken.
func TestVaultNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ab", true},
		{"offsite-2", true},
		{"A" + strings.Repeat("b", 49), true},
		{"a", false},
		{"A" + strings.Repeat("b", 50), false},
		{"2nd", false},
		{"-x", false},
		{"has space", false},
		{"dot.ted", false},
		{"under_score", false},
		{"", false},
		{"é-vault", false},
		{"default", false},
	} {
		r := &cofferv1.VaultRecord{Name: tc.name, Dir: "/srv/vault"}
		err := daemon.ValidateVaultRecord(r)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateVaultRecord(name %q) = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
	for _, r := range []*cofferv1.VaultRecord{
		{Name: "ab"},
		{Name: "ab", Dir: "relative/dir"},
		{Name: "ab", Dir: "/d", S3Endpoint: "h:1", S3Bucket: "b"},
		{Name: "ab", S3Endpoint: "h:1"},
	} {
		if err := daemon.ValidateVaultRecord(r); err == nil {
			t.Errorf("ValidateVaultRecord(%v) = nil; want an error", r)
		}
	}
}

// TestVaultsOpenNamed creates a named directory vault, records it, and
// opens it from a second process's Vaults: what one wrote, the other
// reads. A name never created is ErrUnknownVault, and the default is the
// default whatever it is called.
func TestVaultsOpenNamed(t *testing.T) {
	ctx := t.Context()
	e := topologytest.Start(t, bus.Config{})
	master := bytes.Repeat([]byte{7}, 32)
	def, err := daemon.OpenVault(ctx, mustStore(t, t.TempDir()), master, true)
	if err != nil {
		t.Fatal(err)
	}
	a, err := daemon.NewVaults(def, e.Catalog, master, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cofferv1.VaultRecord{Name: "second", Dir: t.TempDir()}
	created, err := a.Create(ctx, r)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := created.PutCatalogCopy(ctx, "probe", []byte(`"named"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Catalog.Bucket(cofferv1.BucketVaults).Put(ctx, catalog.Key(r.Name), r); err != nil {
		t.Fatal(err)
	}

	b, err := daemon.NewVaults(def, e.Catalog, master, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "default"} {
		if v, err := b.Get(ctx, name); err != nil || v != def {
			t.Errorf("Get(%q) = %p, %v; want the default vault %p", name, v, err, def)
		}
	}
	v, err := b.Get(ctx, "second")
	if err != nil {
		t.Fatalf("Get(second): %v", err)
	}
	if got, err := v.GetCatalogCopy(ctx, "probe"); err != nil || string(got) != `"named"` {
		t.Errorf("the named vault holds %q, %v; want %q", got, err, `"named"`)
	}
	if again, _ := b.Get(ctx, "second"); again != v {
		t.Errorf("a second Get opened the vault again; want the one kept open")
	}
	if _, err := b.Get(ctx, "third"); !errors.Is(err, daemon.ErrUnknownVault) {
		t.Errorf("Get(third) = %v; want ErrUnknownVault", err)
	}
	if names, err := b.Names(ctx); err != nil || len(names) != 1 || names[0] != "second" {
		t.Errorf("Names = %v, %v; want [second]", names, err)
	}
}

// TestVaultSecretSealedToName checks that a sealed S3 secret opens for
// its vault's name only: a record copied under another name does not
// open, so it cannot be moved.
func TestVaultSecretSealedToName(t *testing.T) {
	s, err := secret.New(bytes.Repeat([]byte{9}, 32), daemon.VaultCredentialsPurpose)
	if err != nil {
		t.Fatal(err)
	}
	r := &cofferv1.VaultRecord{Name: "offsite", S3Endpoint: "h:9000", S3Bucket: "b", S3AccessKey: "k",
		SealedS3SecretKey: s.Seal([]byte("s3cret"), "offsite")}
	vs, err := daemon.StoreOf(r, s)
	if err != nil || vs.S3SecretKey != "s3cret" {
		t.Fatalf("StoreOf = %q, %v; want the secret opened", vs.S3SecretKey, err)
	}
	r.Name = "moved"
	if _, err := daemon.StoreOf(r, s); !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("StoreOf(moved) = %v; want secret.ErrOpen", err)
	}
}

// mustStore is a directory store at dir.
func mustStore(t *testing.T, dir string) blob.Store {
	t.Helper()
	s, err := daemon.VaultStore{Dir: dir}.Open()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
