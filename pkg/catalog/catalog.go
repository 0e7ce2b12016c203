package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

var (
	// ErrNotFound: the key has no value (never written, deleted or expired).
	ErrNotFound = errors.New("catalog key not found")
	// ErrExists: Create found the key already holding a value.
	ErrExists = errors.New("catalog key exists")
	// ErrConflict: Update's expected revision is not the key's latest; read
	// again and retry.
	ErrConflict = errors.New("catalog revision conflict")
)

// BucketSpec describes one key-value bucket.
type BucketSpec struct {
	// Name of the bucket: letters, digits, '-' and '_'. Required.
	Name string
	// Description is shown by `nats kv info`.
	Description string
	// History is how many revisions of each key are kept, 1 to 64
	// (default 1).
	History uint8
	// TTL expires values this long after they were written; 0 keeps them.
	TTL time.Duration
	// MemoryStorage keeps the bucket in memory only (lost on restart).
	MemoryStorage bool
	// Replicas in a cluster; default 1.
	Replicas int
}

// Validate reports every problem with s at once.
func (s BucketSpec) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("bucket name is required"))
	}
	for _, c := range []byte(s.Name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			errs = append(errs, fmt.Errorf("bucket name %q: only letters, digits, '-' and '_' allowed", s.Name))
			break
		}
	}
	if s.History > jetstream.KeyValueMaxHistory {
		errs = append(errs, fmt.Errorf("history %d above %d", s.History, jetstream.KeyValueMaxHistory))
	}
	if s.TTL < 0 {
		errs = append(errs, fmt.Errorf("negative ttl %v", s.TTL))
	}
	if s.Replicas < 0 {
		errs = append(errs, fmt.Errorf("negative replicas %d", s.Replicas))
	}
	return errors.Join(errs...)
}

func (s BucketSpec) config() jetstream.KeyValueConfig {
	cfg := jetstream.KeyValueConfig{
		Bucket:      s.Name,
		Description: s.Description,
		History:     max(s.History, 1),
		TTL:         s.TTL,
		Replicas:    max(s.Replicas, 1),
		Storage:     jetstream.FileStorage,
	}
	if s.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	return cfg
}

// Catalog is a set of opened buckets.
type Catalog struct {
	buckets map[string]*Bucket
}

// Open creates each bucket, or updates it to match its spec, and returns
// them. It is idempotent.
func Open(ctx context.Context, js jetstream.JetStream, buckets ...BucketSpec) (*Catalog, error) {
	if js == nil {
		return nil, errors.New("open catalog: nil jetstream")
	}
	c := &Catalog{buckets: make(map[string]*Bucket, len(buckets))}
	for _, spec := range buckets {
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", spec.Name, err)
		}
		if _, dup := c.buckets[spec.Name]; dup {
			return nil, fmt.Errorf("open bucket %s: listed twice", spec.Name)
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, spec.config())
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", spec.Name, err)
		}
		c.buckets[spec.Name] = &Bucket{name: spec.Name, kv: kv}
	}
	return c, nil
}

// Bucket returns the opened bucket called name. Asking for a bucket that
// was not passed to Open is a programming error and panics.
func (c *Catalog) Bucket(name string) *Bucket {
	b, ok := c.buckets[name]
	if !ok {
		panic(fmt.Sprintf("catalog: bucket %q was not opened", name))
	}
	return b
}

// Bucket holds protobuf values under keys built with [Key]. It is safe for
// concurrent use.
type Bucket struct {
	name string
	kv   jetstream.KeyValue
}

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Get reads key's latest value into m and returns its revision. A key that
// was never written, or was deleted, gives [ErrNotFound].
func (b *Bucket) Get(ctx context.Context, key string, m proto.Message) (rev uint64, err error) {
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("get %s/%s: %w", b.name, key, ErrNotFound)
		}
		return 0, fmt.Errorf("get %s/%s: %w", b.name, key, err)
	}
	if err := proto.Unmarshal(e.Value(), m); err != nil {
		return 0, fmt.Errorf("get %s/%s: decode %s: %w", b.name, key, m.ProtoReflect().Descriptor().FullName(), err)
	}
	return e.Revision(), nil
}

// Put writes m under key whatever was there, and returns the new revision.
func (b *Bucket) Put(ctx context.Context, key string, m proto.Message) (rev uint64, err error) {
	data, err := marshal(m)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", b.name, key, err)
	}
	rev, err = b.kv.Put(ctx, key, data)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", b.name, key, err)
	}
	return rev, nil
}

// Create writes m under key only if the key holds no value (never written,
// or deleted), and returns the new revision; otherwise it fails with
// [ErrExists].
func (b *Bucket) Create(ctx context.Context, key string, m proto.Message) (rev uint64, err error) {
	data, err := marshal(m)
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", b.name, key, err)
	}
	rev, err = b.kv.Create(ctx, key, data)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("create %s/%s: %w", b.name, key, ErrExists)
		}
		return 0, fmt.Errorf("create %s/%s: %w", b.name, key, err)
	}
	return rev, nil
}

// Update writes m under key only if the key's latest revision is rev (the
// revision a Get, Create or Update returned), and returns the new revision;
// otherwise it fails with [ErrConflict].
func (b *Bucket) Update(ctx context.Context, key string, m proto.Message, rev uint64) (uint64, error) {
	data, err := marshal(m)
	if err != nil {
		return 0, fmt.Errorf("update %s/%s: %w", b.name, key, err)
	}
	next, err := b.kv.Update(ctx, key, data, rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("update %s/%s at revision %d: %w", b.name, key, rev, ErrConflict)
		}
		return 0, fmt.Errorf("update %s/%s: %w", b.name, key, err)
	}
	return next, nil
}

// LastRevision is the revision of the bucket's latest change, to any key:
// a reader that has applied every change up to it (see [Bucket.Watch]) is
// current as of this call. It is 0 for a bucket never written.
func (b *Bucket) LastRevision(ctx context.Context) (uint64, error) {
	st, err := b.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", b.name, err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("status of %s: not a JetStream bucket", b.name)
	}
	return js.StreamInfo().State.LastSeq, nil
}

// Delete removes key's value; earlier revisions stay in the history.
// Deleting a missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := b.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", b.name, key, err)
	}
	return nil
}

// DeleteIf removes key's value only if the key's latest revision is rev
// (the revision a Get or List saw); otherwise it fails with [ErrConflict].
func (b *Bucket) DeleteIf(ctx context.Context, key string, rev uint64) error {
	err := b.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if err == nil {
		return nil
	}
	var api *jetstream.APIError
	if errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("delete %s/%s at revision %d: %w", b.name, key, rev, ErrConflict)
	}
	return fmt.Errorf("delete %s/%s: %w", b.name, key, err)
}

func marshal(m proto.Message) ([]byte, error) {
	if m == nil {
		return nil, errors.New("nil message")
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return data, nil
}

// filters returns the key filters matching prefix itself and every key
// that extends it by whole parts; "" matches every key.
func filters(prefix string) []string {
	if prefix == "" {
		return []string{jetstream.AllKeys}
	}
	return []string{prefix, prefix + ".>"}
}

// List calls fn with the latest value of every live key that is prefix or
// starts with prefix's parts (prefix is a key built with [Key] from leading
// parts; "" lists the whole bucket), decoding each into a fresh message
// from newMsg. Keys come in no particular order. List stops at, and
// returns, the first error of fn. A key written while List runs may be
// seen at either value.
func (b *Bucket) List(ctx context.Context, prefix string, newMsg func() proto.Message, fn func(key string, m proto.Message) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.kv.WatchFiltered(ctx, filters(prefix), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", b.name, prefix, err)
	}
	defer stopWatcher(w)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("list %s/%s: watcher closed", b.name, prefix)
			}
			if e == nil { // every current value has been delivered
				return nil
			}
			m := newMsg()
			if err := proto.Unmarshal(e.Value(), m); err != nil {
				return fmt.Errorf("list %s: decode %s: %w", b.name, e.Key(), err)
			}
			if err := fn(e.Key(), m); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("list %s/%s: %w", b.name, prefix, ctx.Err())
		}
	}
}

// stopWatcher stops w and keeps reading its channel until the library
// closes it: the library's delivery callback blocks on a full channel
// (holding its lock), so abandoning an unread channel would leak it.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}
