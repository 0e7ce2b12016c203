package catalog_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
)

func newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: 0})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

const bucket = "inventory"

func openBucket(t *testing.T) (*catalog.Bucket, jetstream.JetStream) {
	t.Helper()
	js := newJetStream(t)
	c, err := catalog.Open(t.Context(), js, catalog.BucketSpec{Name: bucket, History: 5})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c.Bucket(bucket), js
}

func str(s string) *wrapperspb.StringValue { return wrapperspb.String(s) }

func TestOpenIdempotent(t *testing.T) {
	js := newJetStream(t)
	specs := []catalog.BucketSpec{
		{Name: "instances", History: 3},
		{Name: "sessions", TTL: time.Hour, MemoryStorage: true},
	}
	c1, err := catalog.Open(t.Context(), js, specs...)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	if _, err := c1.Bucket("instances").Put(t.Context(), "k", str("v1")); err != nil {
		t.Fatal(err)
	}
	c2, err := catalog.Open(t.Context(), js, specs...)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	var got wrapperspb.StringValue
	if _, err := c2.Bucket("instances").Get(t.Context(), "k", &got); err != nil || got.Value != "v1" {
		t.Errorf("after reopening: Get = %q, %v; want v1 kept", got.Value, err)
	}
	kv, err := js.KeyValue(t.Context(), "sessions")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Hour || st.History() != 1 {
		t.Errorf("sessions: ttl %v, history %d; want 1h, 1", st.TTL(), st.History())
	}

	// A changed spec updates the bucket in place.
	specs[0].History = 10
	if _, err := catalog.Open(t.Context(), js, specs...); err != nil {
		t.Fatalf("Open with more history: %v", err)
	}
	kv, _ = js.KeyValue(t.Context(), "instances")
	if st, _ := kv.Status(t.Context()); st.History() != 10 {
		t.Errorf("instances history = %d; want 10 after update", st.History())
	}

	for _, bad := range []catalog.BucketSpec{{}, {Name: "has.dot"}, {Name: "x", History: 65}} {
		if _, err := catalog.Open(t.Context(), js, bad); err == nil {
			t.Errorf("Open(%+v): nil error; want a validation error", bad)
		}
	}
}

func TestBucketCRUD(t *testing.T) {
	b, _ := openBucket(t)
	ctx := t.Context()
	key := catalog.Key("SQL01", "Sales DB")

	var got wrapperspb.StringValue
	if _, err := b.Get(ctx, key, &got); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Get before write: err = %v; want ErrNotFound", err)
	}

	rev1, err := b.Create(ctx, key, str("v1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := b.Create(ctx, key, str("again")); !errors.Is(err, catalog.ErrExists) {
		t.Errorf("second Create: err = %v; want ErrExists", err)
	}
	rev, err := b.Get(ctx, key, &got)
	if err != nil || got.Value != "v1" || rev != rev1 {
		t.Errorf("Get = %q at %d, %v; want v1 at %d", got.Value, rev, err, rev1)
	}

	rev2, err := b.Update(ctx, key, str("v2"), rev1)
	if err != nil {
		t.Fatalf("Update at current revision: %v", err)
	}
	if _, err := b.Update(ctx, key, str("stale"), rev1); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("Update at stale revision: err = %v; want ErrConflict", err)
	}
	if _, err := b.Update(ctx, catalog.Key("SQL01", "missing"), str("x"), rev2); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("Update of a missing key: err = %v; want ErrConflict", err)
	}

	rev3, err := b.Put(ctx, key, str("v3"))
	if err != nil || rev3 <= rev2 {
		t.Fatalf("Put = %d, %v; want a revision after %d", rev3, err, rev2)
	}
	if _, err := b.Get(ctx, key, &got); err != nil || got.Value != "v3" {
		t.Errorf("Get after Put = %q, %v; want v3", got.Value, err)
	}

	if err := b.DeleteIf(ctx, key, rev2); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("DeleteIf at stale revision: err = %v; want ErrConflict", err)
	}
	if _, err := b.Get(ctx, key, &got); err != nil || got.Value != "v3" {
		t.Errorf("Get after a refused DeleteIf = %q, %v; want v3", got.Value, err)
	}
	if err := b.DeleteIf(ctx, key, rev3); err != nil {
		t.Fatalf("DeleteIf at current revision: %v", err)
	}
	if _, err := b.Get(ctx, key, &got); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Get after DeleteIf: err = %v; want ErrNotFound", err)
	}
	if _, err := b.Put(ctx, key, str("v4")); err != nil {
		t.Fatal(err)
	}

	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := b.Get(ctx, key, &got); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Get after Delete: err = %v; want ErrNotFound", err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a deleted key: %v; want nil", err)
	}
	if _, err := b.Create(ctx, key, str("reborn")); err != nil {
		t.Errorf("Create after Delete: %v; want success", err)
	}
}

func TestGetRejectsWrongValue(t *testing.T) {
	b, js := openBucket(t)
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "garbage", []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	var got wrapperspb.StringValue
	if _, err := b.Get(t.Context(), "garbage", &got); err == nil || errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Get of an undecodable value: err = %v; want a decode error", err)
	}
}

func TestHostileKeysInBucket(t *testing.T) {
	b, _ := openBucket(t)
	// The longest key we expect: two sysname parts (128 UTF-16 units, at
	// most 384 UTF-8 bytes, 1152 escaped characters each) and an id. It
	// must stay under the server's 4 KiB control line.
	longest := strings.Repeat("日", 128)
	if _, err := b.Put(t.Context(), catalog.Key(longest, longest, "rp-0001"), str("long")); err != nil {
		t.Errorf("Put of the longest expected key: %v", err)
	}
	for _, name := range hostile {
		key := catalog.Key(`SERVER\SQL2022`, name)
		if _, err := b.Put(t.Context(), key, str(name)); err != nil {
			t.Errorf("Put(Key(%q)) = %q: %v", name, key, err)
			continue
		}
		var got wrapperspb.StringValue
		if _, err := b.Get(t.Context(), key, &got); err != nil || got.Value != name {
			t.Errorf("Get(Key(%q)) = %q, %v; want %q", name, got.Value, err, name)
		}
	}
}

type entry struct {
	parts []string
	value string
}

func list(t *testing.T, b *catalog.Bucket, prefix string) []entry {
	t.Helper()
	var out []entry
	err := b.List(t.Context(), prefix, func() proto.Message { return new(wrapperspb.StringValue) },
		func(key string, m proto.Message) error {
			parts, err := catalog.SplitKey(key)
			if err != nil {
				return err
			}
			out = append(out, entry{parts, m.(*wrapperspb.StringValue).Value})
			return nil
		})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	slices.SortFunc(out, func(a, b entry) int { return slices.Compare(a.parts, b.parts) })
	return out
}

func TestListByPrefix(t *testing.T) {
	b, _ := openBucket(t)
	ctx := t.Context()
	put := func(v string, parts ...string) {
		t.Helper()
		if _, err := b.Put(ctx, catalog.Key(parts...), str(v)); err != nil {
			t.Fatal(err)
		}
	}
	put("instance", "SQL01")
	put("a", "SQL01", "Sales DB")
	put("b", "SQL01", "we]ird.name")
	put("b2", "SQL01", "we]ird.name") // overwritten: latest value only
	put("c", "SQL01.corp", "master")  // same leading text, different instance
	put("d", "SQL01x", "master")
	put("e", "SQL02", "Sales DB")
	put("gone", "SQL01", "dropped")
	if err := b.Delete(ctx, catalog.Key("SQL01", "dropped")); err != nil {
		t.Fatal(err)
	}

	got := list(t, b, catalog.Key("SQL01"))
	want := []entry{
		{[]string{"SQL01"}, "instance"},
		{[]string{"SQL01", "Sales DB"}, "a"},
		{[]string{"SQL01", "we]ird.name"}, "b2"},
	}
	if !slices.EqualFunc(got, want, entryEqual) {
		t.Errorf("List(Key(SQL01)) = %v; want %v", got, want)
	}
	if got := list(t, b, catalog.Key("SQL01.corp")); len(got) != 1 || got[0].value != "c" {
		t.Errorf("List(Key(SQL01.corp)) = %v; want only c", got)
	}
	if got := list(t, b, ""); len(got) != 6 {
		t.Errorf("List(\"\") returned %d keys; want 6", len(got))
	}
	if got := list(t, b, catalog.Key("nothing")); len(got) != 0 {
		t.Errorf("List(Key(nothing)) = %v; want none", got)
	}

	stop := errors.New("stop")
	calls := 0
	err := b.List(ctx, "", func() proto.Message { return new(wrapperspb.StringValue) },
		func(string, proto.Message) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing fn: err %v after %d calls; want stop after 1", err, calls)
	}
}

func entryEqual(a, b entry) bool { return slices.Equal(a.parts, b.parts) && a.value == b.value }

func TestWatch(t *testing.T) {
	b, _ := openBucket(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	k1, k2 := catalog.Key("SQL01", "db1"), catalog.Key("SQL01", "db2")
	if _, err := b.Put(ctx, k1, str("current")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, catalog.Key("SQL02", "db1"), str("other instance")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, k2, str("deleted before watch")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, k2); err != nil {
		t.Fatal(err)
	}

	updates, err := b.Watch(ctx, catalog.Key("SQL01"))
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	next := func() catalog.Update {
		t.Helper()
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatal("updates closed early")
			}
			return u
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for an update")
			panic("unreachable")
		}
	}
	decode := func(u catalog.Update) string {
		t.Helper()
		var v wrapperspb.StringValue
		if err := u.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v.Value
	}

	if u := next(); u.Key != k1 || u.Deleted || decode(u) != "current" {
		t.Errorf("first update = %+v; want current value of %s", u, k1)
	}
	if u := next(); !u.Synced || u.Key != "" {
		t.Errorf("second update = %+v; want the Synced marker", u)
	}

	rev, err := b.Put(ctx, k2, str("live"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, catalog.Key("SQL02", "db9"), str("not watched")); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.Key != k2 || u.Revision != rev || decode(u) != "live" {
		t.Errorf("live update = %+v; want %s at %d", u, k2, rev)
	}
	if err := b.Delete(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.Key != k1 || !u.Deleted {
		t.Errorf("delete update = %+v; want %s deleted", u, k1)
	}

	cancel()
	select {
	case _, ok := <-updates:
		for ok {
			_, ok = <-updates
		}
	case <-time.After(10 * time.Second):
		t.Fatal("updates not closed after cancel")
	}
}

// The catalog relies on a stopped KV watcher closing its channel so that
// nothing stays blocked on it (see stopWatcher).
func TestStoppedWatcherClosesChannel(t *testing.T) {
	_, js := openBucket(t)
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // more than the watcher's 256-entry buffer
		if _, err := kv.Put(t.Context(), catalog.Key("k", string(rune('a'+i%26)), string(rune('A'+i/26))), []byte{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := kv.WatchAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	<-w.Updates()
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		for range w.Updates() {
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("stopped watcher's channel not closed")
	}
}

func TestBucketPanicsWhenNotOpened(t *testing.T) {
	js := newJetStream(t)
	c, err := catalog.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Bucket(unknown) did not panic")
		}
	}()
	c.Bucket("nope")
}
