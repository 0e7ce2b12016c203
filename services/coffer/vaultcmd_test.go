package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/blob/dirstore"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestVaultRekeyAndRotate runs `coffer vault rekey` and `coffer vault key
// rotate` as an operator does, on a vault in coffer up's data directory
// with the master key coffer up created: after the rekey the new key
// opens the vault and the old one is refused, every recovery point
// still reads back, no key is ever printed, a rotation adds a vault key,
// and a rekey back with the key from a command and the environment
// works.
func TestVaultRekeyAndRotate(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	oldKey, newKey := vault.GenerateMasterKey(), vault.GenerateMasterKey()
	writeKey := func(path string, k []byte) {
		t.Helper()
		if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(filepath.Join(data, "master.key"), oldKey)
	newFile := filepath.Join(t.TempDir(), "new.key")
	writeKey(newFile, newKey)

	store, err := dirstore.New(filepath.Join(data, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Init(ctx, store, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	stream := bytes.Repeat([]byte("coffer rekey\n"), 100_000)
	w := v.NewWriter(ctx, vault.WriterOptions{})
	if _, err := w.Write(stream); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	res := w.Result()
	if err := v.PutManifest(ctx, "rp1", &vault.Manifest{Chunks: res.Chunks, Size: res.Size, Checksum: res.Checksum}); err != nil {
		t.Fatal(err)
	}

	secrets := []string{hex.EncodeToString(oldKey), hex.EncodeToString(newKey)}
	vaultCmd := func(env map[string]string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := runVault(ctx, append(args, "--data", data), func(k string) string { return env[k] }, &out, &errOut)
		text := out.String() + errOut.String()
		for _, s := range secrets {
			if strings.Contains(text, s) || err != nil && strings.Contains(err.Error(), s) {
				t.Fatalf("coffer vault %s printed a master key", args[0])
			}
		}
		return text, err
	}
	wantOpens := func(master, refused []byte) {
		t.Helper()
		if _, err := vault.Open(ctx, store, refused); !errors.Is(err, vault.ErrWrongKey) {
			t.Fatalf("Open with the key that should be refused: %v; want ErrWrongKey", err)
		}
		v, err := vault.Open(ctx, store, master)
		if err != nil {
			t.Fatal(err)
		}
		m, err := v.GetManifest(ctx, "rp1")
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		r := v.NewReader(ctx, m.Chunks)
		_, err = got.ReadFrom(r)
		r.Close()
		if err != nil || !bytes.Equal(got.Bytes(), stream) {
			t.Fatalf("the recovery point read back %d bytes (%v); want its %d", got.Len(), err, len(stream))
		}
	}

	if out, err := vaultCmd(nil, "rekey"); err == nil || !strings.Contains(err.Error(), "no new master key") {
		t.Errorf("rekey without a new key: %v\n%s; want it refused, saying so", err, out)
	}
	out, err := vaultCmd(nil, "rekey", "--new-master-key-file", newFile)
	if err != nil || !strings.Contains(out, "1 vault keys are now wrapped by the new master key") || !strings.Contains(out, "master.key") ||
		!strings.Contains(out, "register each instance again") {
		t.Fatalf("rekey: %v\n%s", err, out)
	}
	wantOpens(newKey, oldKey)
	// the old key, still in master.key, is refused by every command
	if out, err := vaultCmd(nil, "check"); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("check with the old key: %v\n%s; want ErrWrongKey", err, out)
	}
	if out, err := vaultCmd(nil, "rekey", "--new-master-key-file", newFile); err != nil {
		t.Errorf("the same rekey again: %v\n%s; want success, changing nothing", err, out)
	}
	writeKey(filepath.Join(data, "master.key"), newKey)

	out, err = vaultCmd(nil, "key", "rotate")
	if err != nil || !strings.Contains(out, "added vault key ") {
		t.Fatalf("key rotate: %v\n%s", err, out)
	}
	keys, err := os.ReadDir(filepath.Join(data, "vault", "keys"))
	if err != nil || len(keys) != 2 {
		t.Fatalf("after key rotate the vault has %d key records (%v); want 2", len(keys), err)
	}
	if !strings.Contains(out, keys[0].Name()) && !strings.Contains(out, keys[1].Name()) {
		t.Errorf("key rotate did not name the key it added:\n%s", out)
	}
	if out, err := vaultCmd(nil, "check", "--full"); err != nil || !strings.Contains(out, "no damage found") {
		t.Errorf("check after the rotation: %v\n%s", err, out)
	}

	// back to the old key: the current one from the environment, the new
	// one from a command
	env := map[string]string{"COFFER_MASTER_KEY": hex.EncodeToString(newKey)}
	oldFile := filepath.Join(t.TempDir(), "old.key")
	writeKey(oldFile, oldKey)
	out, err = vaultCmd(env, "rekey", "--new-master-key-command", "cat "+oldFile)
	if err != nil || !strings.Contains(out, "2 vault keys are now wrapped") {
		t.Fatalf("rekey back: %v\n%s", err, out)
	}
	wantOpens(oldKey, newKey)
	env["COFFER_NEW_MASTER_KEY"] = hex.EncodeToString(newKey)
	if out, err := vaultCmd(env, "rekey", "--new-master-key-command", "cat "+oldFile); err == nil || !strings.Contains(err.Error(), "one way") {
		t.Errorf("a new key given two ways: %v\n%s; want it refused", err, out)
	}
}
