package vault_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/vault"
)

// v1Fixture is a vault written by coffer before packs (vault format 1:
// one object per chunk), with testMaster as its master key: one recovery
// point, "v1-full", of sqlPages(21, 0, 640).
const v1Fixture = "testdata/vault-v1"

// TestReadsFormat1Vault: a vault written by an earlier coffer opens, its
// recovery point reads back exactly, and new streams written into it read
// back beside the old one, which stays readable.
func TestReadsFormat1Vault(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(v1Fixture)); err != nil {
		t.Fatal(err)
	}
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := openVault(t, store)
	want := sqlPages(21, 0, 640)
	check := func(v *vault.Vault) {
		t.Helper()
		m, err := v.GetManifest(t.Context(), "v1-full")
		if err != nil {
			t.Fatal(err)
		}
		got, err := read(t, v, m.Chunks)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the format 1 recovery point read back %d bytes (%v); want its %d", len(got), err, len(want))
		}
		if m.Size != int64(len(want)) || m.Checksum != "blake3:d0978ee2a0110df3327a6158eaf4e6ca983d4858f67edbb306f0e6d341fdc31c" {
			t.Errorf("manifest says %d bytes, %s", m.Size, m.Checksum)
		}
	}
	check(v)
	// a new stream, part of it the old data, goes in beside it
	data := append(sqlPages(22, 0, 256), want...)
	res := write(t, v, data, vault.WriterOptions{})
	if err := v.PutManifest(t.Context(), "new-full", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
		t.Fatal(err)
	}
	v2 := openVault(t, store)
	check(v2)
	m, err := v2.GetManifest(t.Context(), "new-full")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := read(t, v2, m.Chunks); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a stream written into the format 1 vault read back %d bytes (%v); want %d", len(got), err, len(data))
	}
}
