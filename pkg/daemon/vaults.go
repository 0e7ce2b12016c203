package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/secret"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// DefaultVault is the name of the vault every process is configured
// with (--vault-dir or --s3-*). It has no record in the vaults bucket;
// an empty vault name means it too, as every record written before
// vaults had names says.
const DefaultVault = "default"

// VaultCredentialsPurpose is the pkg/secret purpose that seals a named
// vault's S3 secret key; the seal is bound to the vault's name.
const VaultCredentialsPurpose = "vault-credentials"

// ErrUnknownVault: no vault of that name was created.
var ErrUnknownVault = errors.New("no such vault")

var vaultName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,49}$`)

// ValidateVaultName refuses a name that is not 2 to 50 letters, digits
// and hyphens starting with a letter.
func ValidateVaultName(name string) error {
	if !vaultName.MatchString(name) {
		return fmt.Errorf("vault name %q: want 2 to 50 letters, digits and hyphens, starting with a letter", name)
	}
	return nil
}

// IsDefaultVault reports whether name means the default vault.
func IsDefaultVault(name string) bool { return name == "" || name == DefaultVault }

// StoreOf returns where the named vault r is, with its S3 secret key
// opened by sealer.
func StoreOf(r *cofferv1.VaultRecord, sealer *secret.Sealer) (VaultStore, error) {
	vs := VaultStore{Dir: r.GetDir(), S3Endpoint: r.GetS3Endpoint(), S3Bucket: r.GetS3Bucket(), S3Prefix: r.GetS3Prefix(),
		S3AccessKey: r.GetS3AccessKey(), S3PlainHTTP: r.GetS3InsecureHttp(), S3CAPEM: r.GetS3CaPem()}
	if len(r.GetSealedS3SecretKey()) > 0 {
		key, err := sealer.Open(r.GetSealedS3SecretKey(), r.GetName())
		if err != nil {
			return VaultStore{}, fmt.Errorf("vault %s: its S3 secret key: %w", r.GetName(), err)
		}
		vs.S3SecretKey = string(key)
	}
	return vs, nil
}

// ValidateVaultRecord reports every problem with a vault record as
// someone asked for it, before anything is created.
func ValidateVaultRecord(r *cofferv1.VaultRecord) error {
	var errs []error
	if err := ValidateVaultName(r.GetName()); err != nil {
		errs = append(errs, err)
	} else if r.GetName() == DefaultVault {
		errs = append(errs, fmt.Errorf("vault name %q is the vault coffer is configured with: choose another", DefaultVault))
	}
	s3 := r.GetS3Endpoint() != ""
	switch {
	case s3 && r.GetDir() != "":
		errs = append(errs, errors.New("give a directory or an S3 endpoint, not both"))
	case !s3 && r.GetDir() == "":
		errs = append(errs, errors.New("give a directory or an S3 endpoint and bucket"))
	case s3 && r.GetS3Bucket() == "":
		errs = append(errs, errors.New("an S3 vault needs a bucket"))
	case !s3 && !filepath.IsAbs(r.GetDir()):
		errs = append(errs, fmt.Errorf("directory %q: want an absolute path", r.GetDir()))
	}
	if m := r.GetObjectLock(); m != "" {
		if _, err := blob.ParseRetentionMode(m); err != nil {
			errs = append(errs, err)
		} else if !s3 {
			errs = append(errs, errors.New("a directory cannot be immutable; Object Lock needs an S3 vault"))
		}
	}
	return errors.Join(errs...)
}

// SameStore reports whether two records place a vault in the same store.
func SameStore(a, b *cofferv1.VaultRecord) bool {
	return a.GetDir() == b.GetDir() && a.GetS3Endpoint() == b.GetS3Endpoint() && a.GetS3Bucket() == b.GetS3Bucket() &&
		a.GetS3Prefix() == b.GetS3Prefix() && a.GetS3AccessKey() == b.GetS3AccessKey() && a.GetS3InsecureHttp() == b.GetS3InsecureHttp() &&
		bytes.Equal(a.GetS3CaPem(), b.GetS3CaPem())
}

// Vaults opens the vaults a process works on: the default one it was
// given, and each named one (bucket vaults) on first use, kept open from
// then on. It is safe for concurrent use.
type Vaults struct {
	def     *vault.Vault
	records *catalog.Bucket
	master  []byte
	sealer  *secret.Sealer
	log     *slog.Logger

	mu     sync.Mutex
	opened map[string]*vault.Vault
}

// NewVaults returns the vaults of a process whose default vault is def,
// named ones read from cat's vaults bucket and opened with master. A nil
// cat, or a nil master, serves the default vault alone.
func NewVaults(def *vault.Vault, cat *catalog.Catalog, master []byte, log *slog.Logger) (*Vaults, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Vaults{def: def, master: master, log: log, opened: map[string]*vault.Vault{}}
	if cat != nil && master != nil {
		s, err := secret.New(master, VaultCredentialsPurpose)
		if err != nil {
			return nil, err
		}
		v.records, v.sealer = cat.Bucket(cofferv1.BucketVaults), s
	}
	return v, nil
}

// Get returns the vault called name ("" or DefaultVault: the default),
// opening it on first use. A name no vault has gives ErrUnknownVault.
func (v *Vaults) Get(ctx context.Context, name string) (*vault.Vault, error) {
	if IsDefaultVault(name) {
		return v.def, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if o, ok := v.opened[name]; ok {
		return o, nil
	}
	r, err := v.Record(ctx, name)
	if err != nil {
		return nil, err
	}
	o, err := v.open(ctx, r, false)
	if err != nil {
		return nil, err
	}
	v.opened[name] = o
	return o, nil
}

// Create creates the vault r describes in its store (or opens the one
// there) and keeps it open; recording r is the caller's, the bucket's
// owner.
func (v *Vaults) Create(ctx context.Context, r *cofferv1.VaultRecord) (*vault.Vault, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	o, err := v.open(ctx, r, true)
	if err != nil {
		return nil, err
	}
	v.opened[r.GetName()] = o
	return o, nil
}

// open opens (with create, creates if absent) the vault in r's store.
func (v *Vaults) open(ctx context.Context, r *cofferv1.VaultRecord, create bool) (*vault.Vault, error) {
	if v.sealer == nil {
		return nil, fmt.Errorf("vault %s: this process has no catalog or master key to open named vaults with", r.GetName())
	}
	vs, err := StoreOf(r, v.sealer)
	if err != nil {
		return nil, err
	}
	// retried for retry's default: the process's --store-retry-for is
	// the default vault's
	vs.Logger = v.log.With("vault", r.GetName())
	lock := blob.RetentionMode(r.GetObjectLock())
	if create {
		if err := vs.MakeBucket(ctx, lock != ""); err != nil {
			return nil, fmt.Errorf("vault %s: %w", r.GetName(), err)
		}
	}
	store, err := vs.Open()
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", r.GetName(), err)
	}
	o, err := OpenVault(ctx, store, v.master, create)
	if err == nil && create && lock != "" && o.ObjectLock() != lock {
		// the vault's config records the mode; opened again, it locks
		if err = vault.EnableObjectLock(ctx, store, lock); err == nil {
			o, err = OpenVault(ctx, store, v.master, false)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", r.GetName(), err)
	}
	return o, nil
}

// Record reads the named vault's record.
func (v *Vaults) Record(ctx context.Context, name string) (*cofferv1.VaultRecord, error) {
	if v.records == nil {
		return nil, fmt.Errorf("vault %s: %w", name, ErrUnknownVault)
	}
	r := &cofferv1.VaultRecord{}
	if _, err := v.records.Get(ctx, catalog.Key(name), r); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, fmt.Errorf("vault %s: %w", name, ErrUnknownVault)
		}
		return nil, fmt.Errorf("vault %s: %w", name, err)
	}
	return r, nil
}

// Names lists the named vaults recorded, by name (the default one not
// among them).
func (v *Vaults) Names(ctx context.Context) ([]string, error) {
	if v.records == nil {
		return nil, nil
	}
	var out []string
	err := v.records.List(ctx, "", func() proto.Message { return &cofferv1.VaultRecord{} }, func(_ string, m proto.Message) error {
		out = append(out, m.(*cofferv1.VaultRecord).GetName())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list vaults: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// VaultsCopy names the default vault's copy of the vaults bucket (a
// VaultSet in protojson), which the committer keeps so that the named
// vaults are found again from the default vault alone: by a rebuild of a
// lost catalog, and by `coffer vault check --vault NAME`.
const VaultsCopy = "vaults"

// VaultRecordsIn reads the named vaults' records from the default vault
// def's copy, by name. A vault without a copy (no named vault was ever
// created) has none.
func VaultRecordsIn(ctx context.Context, def *vault.Vault) ([]*cofferv1.VaultRecord, error) {
	data, err := def.GetCatalogCopy(ctx, VaultsCopy)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	set := &cofferv1.VaultSet{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, set); err != nil {
		return nil, fmt.Errorf("%w: decode the vault's copy of the named vaults: %v", vault.ErrCorrupt, err)
	}
	out := set.GetVaults()
	slices.SortFunc(out, func(a, b *cofferv1.VaultRecord) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// OpenNamed opens the vault r describes with the master key, as a process
// without the catalog does (coffer vault check --vault NAME).
func OpenNamed(ctx context.Context, r *cofferv1.VaultRecord, master []byte) (*vault.Vault, error) {
	s, err := secret.New(master, VaultCredentialsPurpose)
	if err != nil {
		return nil, err
	}
	v := &Vaults{master: master, sealer: s, log: slog.New(slog.DiscardHandler)}
	return v.open(ctx, r, false)
}
