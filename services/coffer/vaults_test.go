package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/miniotest"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestSeveralVaults runs coffer with its default vault in a directory and
// two named vaults, one in MinIO and one in another directory: each
// database's backups go to the vault its protection names, its recovery
// points say so and are found in that store (and no other), and each
// restores exactly. Bad names, an unknown vault and a store that refuses
// the credentials are refused, saying why, and create nothing; no answer
// holds the S3 secret. After the whole catalog is lost, `coffer vault
// rebuild` puts back the named vaults (from the default vault's copy) and
// every point of every vault.
func TestSeveralVaults(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	s3, s3Args := namedS3(t)
	localDir := filepath.Join(t.TempDir(), "local2")

	// refusals first: nothing may be created by them
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"vault", "create", "2nd", "--dir", localDir}, "2 to 50 letters, digits and hyphens"},
		{[]string{"vault", "create", "x", "--dir", localDir}, "2 to 50 letters"},
		{[]string{"vault", "create", "has_underscore", "--dir", localDir}, "2 to 50 letters"},
		{[]string{"vault", "create", "default", "--dir", localDir}, "choose another"},
		{[]string{"vault", "create", "nowhere"}, "give a directory or an S3 endpoint"},
		{append([]string{"vault", "create", "both", "--dir", localDir, "--s3-bucket", "b"}, s3Args...), "not both"},
	} {
		out, err := h.coffer(c.args...)
		if err == nil || !strings.Contains(out+err.Error(), c.want) {
			t.Errorf("coffer %s: %v\n%s\nwant an error saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	badArgs := append(append([]string(nil), s3Args...), "--s3-secret-key-file", wrong)
	out, err := h.coffer(append([]string{"vault", "create", "refused", "--s3-bucket", "refused"}, badArgs...)...)
	if err == nil || !strings.Contains(out+err.Error(), "vault refused not created") {
		t.Errorf("vault create with a wrong secret key: %v\n%s\nwant it refused", err, out)
	}

	h.mustCoffer(append([]string{"vault", "create", "offsite", "--s3-bucket", "offsite"}, s3Args...)...)
	h.mustCoffer("vault", "create", "local2", "--dir", localDir)
	// a second create of the same vault in the same store succeeds again;
	// in another store it is refused
	h.mustCoffer("vault", "create", "local2", "--dir", localDir)
	if out, err := h.coffer("vault", "create", "local2", "--dir", t.TempDir()); err == nil || !strings.Contains(out+err.Error(), "already exists, in another store") {
		t.Errorf("vault create of an existing name in another store: %v\n%s", err, out)
	}
	listed := h.mustCoffer("vault", "list", "--json")
	if strings.Contains(listed, s3.SecretKey) || strings.Contains(h.mustCoffer("vault", "list"), s3.SecretKey) {
		t.Fatalf("vault list shows the S3 secret key:\n%s", listed)
	}
	vaults := cofferJSON[[]gateway.Vault](h, "vault", "list")
	if len(vaults) != 3 || vaults[0].Name != "default" || vaults[1].Name != "local2" || vaults[1].Dir != localDir ||
		vaults[2].Name != "offsite" || vaults[2].S3Bucket != "offsite" {
		t.Fatalf("vault list = %+v; want default, local2 in %s, offsite in bucket offsite", vaults, localDir)
	}

	dbs := map[string]string{"Sales": "offsite", "Staff": "local2", "Ops": ""}
	for db := range dbs {
		if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.sim.Commit(db, 8); err != nil {
			t.Fatal(err)
		}
	}
	h.register("Sales", "Staff", "Ops")
	if out, err := h.coffer("protect", "sql1/Sales", "--vault", "nosuch"); err == nil || !strings.Contains(out+err.Error(), "no vault nosuch") {
		t.Errorf("protect into an unknown vault: %v\n%s", err, out)
	}
	if out, err := h.coffer("protect", "sql1/Sales", "--vault", "bad name"); err == nil || !strings.Contains(out+err.Error(), "2 to 50 letters") {
		t.Errorf("protect into a badly named vault: %v\n%s", err, out)
	}
	for db, v := range dbs {
		args := []string{"protect", "sql1/" + db}
		if v != "" {
			args = append(args, "--vault", v)
		}
		h.mustCoffer(args...)
	}
	for db := range dbs {
		h.eventually("the first full of "+db, func() bool {
			return len(cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)) == 1
		})
	}

	// where each vault is, opened as coffer would
	key, err := hex.DecodeString(h.key)
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]daemon.VaultStore{
		"":        {Dir: filepath.Join(h.data, "vault")},
		"local2":  {Dir: localDir},
		"offsite": {S3Endpoint: s3.Endpoint, S3Bucket: "offsite", S3AccessKey: s3.AccessKey, S3SecretKey: s3.SecretKey, S3CAFile: s3.CAFile},
	}
	opened := map[string]*vault.Vault{}
	for name, vs := range stores {
		store, err := vs.Open()
		if err != nil {
			t.Fatal(err)
		}
		if opened[name], err = vault.Open(t.Context(), store, key); err != nil {
			t.Fatalf("open vault %q: %v", name, err)
		}
	}

	for db, v := range dbs {
		t.Run(db, func(t *testing.T) {
			// a log after the full, then nothing changes: the latest
			// restore equals the database as it is
			if _, err := h.sim.Commit(db, 5); err != nil {
				t.Fatal(err)
			}
			if job := cofferJSON[gateway.Job](h, "backup", "sql1/"+db, "--type", "log", "--wait"); job.State != "succeeded" {
				t.Fatalf("log backup: %+v", job)
			}
			rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
			if len(rps) != 2 {
				t.Fatalf("%d recovery points; want a full and a log", len(rps))
			}
			for _, rp := range rps {
				if rp.Vault != v {
					t.Errorf("recovery point %s (%s) is in vault %q; want %q", rp.ID, rp.Type, rp.Vault, v)
				}
				for name, o := range opened {
					_, err := o.GetManifest(t.Context(), rp.ID)
					if in := err == nil; in != (name == v) {
						t.Errorf("manifest of %s in vault %q: %v; want it only in %q", rp.ID, name, err, v)
					}
				}
			}
			want, err := h.sim.ContentHash(db, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			target := db + " restored"
			if job := cofferJSON[gateway.Job](h, "restore", "sql1/"+db, "--latest", "--as", target, "--wait"); job.State != "succeeded" {
				t.Fatalf("restore: %+v", job)
			}
			if got, err := h.sim.ContentHash(target, time.Time{}); err != nil || got != want {
				t.Fatalf("restored %s: content hash %s (%v); want the source's %s", target, got, err, want)
			}
		})
	}

	// coffer vault check finds a named vault through the default vault
	// alone, and checks it
	env := func(k string) string { return map[string]string{"COFFER_MASTER_KEY": h.key}[k] }
	for _, name := range []string{"offsite", "local2"} {
		var out bytes.Buffer
		err := runVault(t.Context(), []string{"check", "--full", "--vault", name, "--data", h.data}, env, &out, io.Discard)
		if err != nil || !strings.Contains(out.String(), "vault "+name+" (") || !strings.Contains(out.String(), "full check: 2 recovery points") ||
			!strings.Contains(out.String(), "no damage found") {
			t.Errorf("coffer vault check --full --vault %s: %v\n%s\nwant its 2 points checked, no damage", name, err, out.String())
		}
	}
	err = runVault(t.Context(), []string{"check", "--vault", "nosuch", "--data", h.data}, env, io.Discard, io.Discard)
	if !errors.Is(err, daemon.ErrUnknownVault) {
		t.Errorf("coffer vault check --vault nosuch: %v; want ErrUnknownVault", err)
	}

	// a soft delete in a named vault: once its window ends, garbage
	// collection deletes the manifest there, and collects that vault
	staff := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Staff")
	log := staff[len(staff)-1]
	if log.Type != "log" {
		t.Fatalf("Staff's last point is a %s; want its log", log.Type)
	}
	h.mustCoffer("rp", "delete", log.ID)
	later := time.Now().Add(15 * 24 * time.Hour)
	freed := 0
	for k := range 2 { // the first condemns the log's chunks, the second deletes them
		n, _, err := h.run.committer.CollectGarbage(t.Context(), later.Add(time.Duration(k)*time.Hour))
		if err != nil {
			t.Fatalf("garbage collection: %v", err)
		}
		freed += n
	}
	if _, err := opened["local2"].GetManifest(t.Context(), log.ID); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("manifest of the purged point %s in local2: %v; want it deleted", log.ID, err)
	}
	if freed == 0 {
		t.Errorf("garbage collection freed no chunk; want the purged log's")
	}
	var checked bytes.Buffer
	if err := runVault(t.Context(), []string{"check", "--vault", "local2", "--data", h.data}, env, &checked, io.Discard); err != nil ||
		!strings.Contains(checked.String(), "fast check: 1 recovery points") || strings.Contains(checked.String(), "no recovery point needs") {
		t.Errorf("coffer vault check --vault local2 after the purge: %v\n%s\nwant 1 point and no unreferenced chunk", err, checked.String())
	}

	// the whole catalog lost: the named vaults and their points come back
	// from the vaults alone
	h.restart(true)
	out = h.mustCoffer("vault", "rebuild")
	t.Logf("coffer vault rebuild:\n%s", out)
	if !strings.Contains(out, "vault local2: 1 manifests in the vault: 1 recovery points recorded") ||
		!strings.Contains(out, "vault offsite: 2 manifests in the vault: 2 recovery points recorded") ||
		!strings.Contains(out, "2 named vaults put back from the default vault's copy: local2, offsite") {
		t.Errorf("rebuild printed:\n%s\nwant each named vault put back with its 2 points", out)
	}
	if got := cofferJSON[[]gateway.Vault](h, "vault", "list"); len(got) != 3 {
		t.Errorf("after the rebuild vault list = %+v; want the default and the two named vaults", got)
	}
	for db, v := range dbs {
		rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		want := 2
		if db == "Staff" {
			want = 1 // its log was purged
		}
		if len(rps) != want || rps[0].Vault != v || rps[len(rps)-1].Vault != v {
			t.Errorf("after the rebuild %s has %+v; want %d points in vault %q", db, rps, want, v)
		}
	}
}

// TestVaultsInURLMode runs named vaults and a second copy in URL mode,
// where SQL Server writes the backup to the streamer's S3 endpoint and
// reads it back from there: the backup goes to the named vault, the copy
// to the other, and once the first vault's directory is deleted the
// endpoint serves the copy, and the restore is exact.
func TestVaultsInURLMode(t *testing.T) {
	h := startHarness(t, harnessOptions{url: true, trustCA: true})
	firstDir, copyDir := filepath.Join(t.TempDir(), "first"), filepath.Join(t.TempDir(), "copies")
	h.mustCoffer("vault", "create", "first", "--dir", firstDir)
	h.mustCoffer("vault", "create", "copies", "--dir", copyDir)
	h.setPolicy("copied", `{"full":{"frequency":"daily","hour":0},"retention":{"full":"7d"},"copy":{"vault":"copies","retention":"30d"}}`)
	const db = "Sales"
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.Commit(db, 20); err != nil {
		t.Fatal(err)
	}
	h.register(db)
	if out := h.mustCoffer("instance", "check", "sql1"); !strings.Contains(out, "URL mode: SQL Server reaches and trusts the streamer") {
		t.Fatalf("instance check:\n%s\nwant URL mode", out)
	}
	h.mustCoffer("protect", "sql1/"+db, "--policy", "copied", "--vault", "first")
	var rps []gateway.RecoveryPoint
	h.eventually("the first full, copied", func() bool {
		rps = cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		return len(rps) == 1 && len(rps[0].Copies) == 1
	})
	if rps[0].Vault != "first" || rps[0].Copies[0] != "copies" {
		t.Fatalf("recovery point %+v; want it in first, copied to copies", rps[0])
	}
	want, err := h.sim.ContentHash(db, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ target, from string }{{"from first", ""}, {"from the copy", "copies"}} {
		args := []string{"restore", "sql1/" + db, "--point", rps[0].ID, "--as", c.target, "--wait"}
		if c.from != "" {
			args = append(args, "--from-vault", c.from)
		}
		h.mustCoffer(args...)
		if got, err := h.sim.ContentHash(c.target, time.Time{}); err != nil || got != want {
			t.Errorf("restored %q: content hash %s (%v); want %s", c.target, got, err, want)
		}
	}
	if err := os.RemoveAll(firstDir); err != nil {
		t.Fatal(err)
	}
	h.mustCoffer("restore", "sql1/"+db, "--point", rps[0].ID, "--as", "after the loss", "--wait")
	if got, err := h.sim.ContentHash("after the loss", time.Time{}); err != nil || got != want {
		t.Errorf("restored after the first vault was lost: content hash %s (%v); want %s", got, err, want)
	}
}

// namedS3 starts a MinIO for a named vault and returns it with the flags
// of coffer vault create NAME that reach it (the secret in a file).
func namedS3(t *testing.T) (*miniotest.Server, []string) {
	t.Helper()
	s3 := miniotest.Start(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(s3.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s3, []string{"--s3-endpoint", s3.Endpoint, "--s3-access-key", s3.AccessKey, "--s3-ca-file", s3.CAFile,
		"--s3-secret-key-file", secretFile}
}
