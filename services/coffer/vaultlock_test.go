package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/blob/s3store"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/vault"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestVaultCreate: `coffer vault create` creates a directory vault once,
// says so when it exists, and refuses to make a directory immutable.
func TestVaultCreate(t *testing.T) {
	data := t.TempDir()
	env := func(string) string { return "" }
	for _, want := range []string{"created", "exists"} {
		var out bytes.Buffer
		if err := runVault(t.Context(), []string{"create", "--data", data}, env, &out, &out); err != nil {
			t.Fatalf("vault create: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "vault "+data) || !strings.Contains(out.String(), want) {
			t.Errorf("vault create said %q; want %q", out.String(), want)
		}
	}
	var out bytes.Buffer
	err := runVault(t.Context(), []string{"create", "--data", data, "--object-lock", "governance"}, env, &out, &out)
	if !errors.Is(err, blob.ErrUnsupported) {
		t.Errorf("vault create --object-lock on a directory = %v; want it refused", err)
	}
	err = runVault(t.Context(), []string{"create", "--data", data, "--object-lock", "forever"}, env, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "governance or compliance") {
		t.Errorf("vault create --object-lock forever = %v; want the modes named", err)
	}
}

// TestImmutableVaultRoundTrip: `coffer vault create --object-lock
// compliance` makes the bucket, with Object Lock, and the vault; a full
// backup commits with its manifest and packs locked until it expires, so
// that coffer's own credentials cannot delete them, and restores exactly.
func TestImmutableVaultRoundTrip(t *testing.T) {
	h := startHarness(t, harnessOptions{s3: true, objectLock: "compliance", pages: 64})
	h.protected("Sales")
	job := cofferJSON[gateway.Job](h, "backup", "sql1/Sales", "--type", "full", "--wait")
	if job.State != "succeeded" || job.RecoveryPoint == "" {
		t.Fatalf("backup job %+v", job)
	}
	var rp *gateway.RecoveryPoint
	for _, r := range cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/Sales") {
		if r.ID == job.RecoveryPoint {
			rp = &r
		}
	}
	if rp == nil || rp.Start == nil || rp.ExpiresAt == nil {
		t.Fatalf("recovery point %s: %+v", job.RecoveryPoint, rp)
	}
	want, err := h.sim.ContentHash("Sales", *rp.Start)
	if err != nil {
		t.Fatal(err)
	}
	h.sim.Commit("Sales", 10)
	rjob := cofferJSON[gateway.Job](h, "restore", "sql1/Sales", "--point", rp.ID, "--as", "Sales restored", "--wait")
	if rjob.State != "succeeded" {
		t.Fatalf("restore job %+v", rjob)
	}
	if got, err := h.sim.ContentHash("Sales restored", time.Time{}); err != nil || got != want {
		t.Fatalf("restored: content hash %s (%v); want the source's as of the backup %s", got, err, want)
	}

	store, err := s3store.New(s3store.Config{Endpoint: h.s3.Endpoint, Bucket: "vault", AccessKey: h.s3.AccessKey, SecretKey: h.s3.SecretKey,
		RootCAs: h.s3.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	checkLocked(t, store, h.key, rp)
}

// checkLocked checks that the recovery point rp's manifest and packs in
// store are locked until at least its expiry, so that coffer's own
// credentials cannot delete them.
func checkLocked(t *testing.T, store *s3store.Store, masterKey string, rp *gateway.RecoveryPoint) {
	t.Helper()
	ctx := t.Context()
	key := "manifests/" + rp.ID
	until, err := store.Retention(ctx, key)
	if err != nil || until.Before(*rp.ExpiresAt) {
		t.Errorf("manifest locked until %v (%v); want at least its expiry %v", until, err, *rp.ExpiresAt)
	}
	if err := store.Purge(ctx, key); !errors.Is(err, blob.ErrLocked) {
		t.Errorf("Purge of the manifest with coffer's credentials = %v; want ErrLocked", err)
	}
	master, err := vault.ParseMasterKey(masterKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, store, master)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v.GetManifest(ctx, rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	packs := map[string]bool{}
	for _, c := range m.Chunks {
		loc, ok := v.Locate(c.ID)
		if !ok {
			t.Fatalf("chunk %s not in the index", c.ID)
		}
		packs[loc.Key] = true
	}
	for k := range packs {
		if until, err := store.Retention(ctx, k); err != nil || until.Before(*rp.ExpiresAt) {
			t.Errorf("pack %s locked until %v (%v); want at least %v", k, until, err, *rp.ExpiresAt)
		}
		if err := store.Purge(ctx, k); !errors.Is(err, blob.ErrLocked) {
			t.Errorf("Purge of pack %s = %v; want ErrLocked", k, err)
		}
	}
	t.Logf("manifest and %d packs locked until at least %v; their deletes with coffer's credentials refused", len(packs), *rp.ExpiresAt)
}

// TestImmutableNamedVault: `coffer vault create NAME --object-lock
// governance` makes a named S3 vault immutable (a directory, or a mode
// S3 lacks, is refused); a database protected into it commits its full
// locked until it expires, and restores exactly from it.
func TestImmutableNamedVault(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	s3, s3Args := namedS3(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"vault", "create", "lockdir", "--dir", t.TempDir(), "--object-lock", "governance"}, "Object Lock needs an S3 vault"},
		{append([]string{"vault", "create", "forever", "--s3-bucket", "forever", "--object-lock", "forever"}, s3Args...), "want governance or compliance"},
	} {
		if out, err := h.coffer(c.args...); err == nil || !strings.Contains(out+err.Error(), c.want) {
			t.Errorf("coffer %s: %v\n%s\nwant an error saying %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
	h.mustCoffer(append([]string{"vault", "create", "locked", "--s3-bucket", "locked", "--object-lock", "governance"}, s3Args...)...)
	vaults := cofferJSON[[]gateway.Vault](h, "vault", "list")
	if len(vaults) != 2 || vaults[1].Name != "locked" || vaults[1].ObjectLock != "GOVERNANCE" {
		t.Fatalf("vault list = %+v; want default, then locked in governance mode", vaults)
	}

	const db = "Sales"
	if err := h.sim.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.Commit(db, 8); err != nil {
		t.Fatal(err)
	}
	h.register(db)
	h.mustCoffer("protect", "sql1/"+db, "--vault", "locked")
	var rp gateway.RecoveryPoint
	h.eventually("the first full of "+db, func() bool {
		rps := cofferJSON[[]gateway.RecoveryPoint](h, "rp", "list", "sql1/"+db)
		if len(rps) == 1 {
			rp = rps[0]
		}
		return len(rps) == 1
	})
	if rp.Vault != "locked" || rp.Start == nil || rp.ExpiresAt == nil {
		t.Fatalf("recovery point %+v; want it in vault locked, with its start and expiry", rp)
	}
	want, err := h.sim.ContentHash(db, *rp.Start)
	if err != nil {
		t.Fatal(err)
	}
	store, err := s3store.New(s3store.Config{Endpoint: s3.Endpoint, Bucket: "locked", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
		RootCAs: s3.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	checkLocked(t, store, h.key, &rp)

	if _, err := h.sim.Commit(db, 10); err != nil {
		t.Fatal(err)
	}
	rjob := cofferJSON[gateway.Job](h, "restore", "sql1/"+db, "--point", rp.ID, "--as", "Sales restored", "--wait")
	if rjob.State != "succeeded" {
		t.Fatalf("restore job %+v", rjob)
	}
	if got, err := h.sim.ContentHash("Sales restored", time.Time{}); err != nil || got != want {
		t.Fatalf("restored: content hash %s (%v); want the source's as of the backup %s", got, err, want)
	}
}

// TestS3PolicyObjectLock: the policy of an immutable vault's user lets it
// lock objects and delete versions, and never bypass a lock.
func TestS3PolicyObjectLock(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"s3", "policy", "--bucket", "vault", "--prefix", "site1", "--object-lock"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var p iamPolicy
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, st := range p.Statement {
		for _, r := range st.Resource {
			if r != "arn:aws:s3:::vault" && r != "arn:aws:s3:::vault/site1/*" {
				t.Errorf("statement %s covers %s; want the vault's bucket and prefix alone", st.Sid, r)
			}
		}
		for _, a := range st.Action {
			allowed[a] = true
		}
	}
	for _, a := range []string{"s3:PutObjectRetention", "s3:GetObjectRetention", "s3:DeleteObjectVersion", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration"} {
		if !allowed[a] {
			t.Errorf("the policy does not allow %s", a)
		}
	}
	for a := range allowed {
		if strings.Contains(a, "Bypass") || strings.Contains(a, "*") || strings.Contains(a, "PutBucket") || strings.Contains(a, "PutObjectLegalHold") {
			t.Errorf("the policy allows %s", a)
		}
	}
}
