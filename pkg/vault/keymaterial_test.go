package vault_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestKeyMaterial: the material of a vault with two keys is the wrapping
// key, three secrets per vault key and the chunk-id key, all distinct,
// and none of them is in the clear in the key records; another master key
// is refused.
func TestKeyMaterial(t *testing.T) {
	ctx := t.Context()
	store := newDirStore(t)
	v := initVault(t, store)
	if _, err := v.AddKey(ctx, testMaster); err != nil {
		t.Fatal(err)
	}
	got, err := v.KeyMaterial(ctx, testMaster)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+3+1+3 {
		t.Fatalf("got %d secrets; want 8 (the wrapping key, 2 vault keys with 3 each, the chunk-id key)", len(got))
	}
	var records []byte
	err = store.List(ctx, "keys/", func(i blob.Info) error {
		records = append(records, getRaw(t, store, i.Key)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, k := range got {
		if len(k) != 32 || seen[string(k)] || bytes.Equal(k, testMaster) {
			t.Errorf("secret %d: %d bytes, repeated %v; want 32 distinct bytes, not the master key", i, len(k), seen[string(k)])
		}
		seen[string(k)] = true
		for _, enc := range []string{string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k)} {
			if strings.Contains(string(records), enc) {
				t.Errorf("secret %d is in the clear in the key records", i)
			}
		}
	}
	if _, err := v.KeyMaterial(ctx, bytes.Repeat([]byte{1}, vault.MasterKeySize)); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("another master key: %v; want ErrWrongKey", err)
	}
}
