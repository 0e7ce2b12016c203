package vault_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/blob"
	"github.com/cofferhq/coffer/pkg/vault"
)

// TestCondemnedStoredAgain: chunks no manifest names are condemned; a
// writer that starts after that stores them again rather than
// deduplicate against them, while one that started before may still
// deduplicate against them, and then keeps them: the next collection
// deletes only the condemned copies no manifest needs, never the copies
// stored again.
func TestCondemnedStoredAgain(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	a, b := sqlPages(61, 0, 2<<20/8192), sqlPages(62, 0, 2<<20/8192)
	old := write(t, v, append(append([]byte(nil), a...), b...), vault.WriterOptions{})

	// a writer in another process starts before the collection
	early := openVault(t, store)
	sess, err := early.OpenSession(ctx, vault.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Condemned == 0 {
		t.Fatalf("collection: %+v, %v; want the unreferenced stream condemned", st, err)
	}
	// one that starts after stores b again
	late := openVault(t, store)
	again := write(t, late, b, vault.WriterOptions{})
	if again.NewChunks != len(uniq(again.Chunks)) {
		t.Errorf("a writer started after the condemnation stored %d of %d chunks; want all, stored again", again.NewChunks, len(uniq(again.Chunks)))
	}
	if err := late.PutManifest(ctx, "b", &vault.Manifest{Chunks: again.Chunks, Size: again.Size}); err != nil {
		t.Fatal(err)
	}
	// the early writer deduplicates a against the condemned copies
	w := early.NewWriter(ctx, vault.WriterOptions{Session: sess, PackSize: 1})
	w.Write(a)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := w.Result().NewChunks; n > 1 {
		t.Errorf("a writer started before the condemnation stored %d chunks; want them deduplicated", n)
	}
	// the collection waits for it...
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Chunks != 0 || st.Waiting == 0 {
		t.Errorf("collection with the early writer open: %+v, %v; want nothing deleted", st, err)
	}
	resA := w.Result()
	if err := early.PutDraft(ctx, "a", &vault.Manifest{Chunks: resA.Chunks, Size: resA.Size}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// ...then deletes the condemned copies of b, keeping a's (its draft
	// names them) and b's new copies
	var deleted int
	for range 2 {
		st, err := v.Collect(ctx, vault.CollectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deleted += st.Chunks
	}
	if want := len(uniq(old.Chunks)) - len(uniq(resA.Chunks)); deleted < want {
		t.Errorf("deleted %d chunk copies; want at least the %d of b condemned", deleted, want)
	}
	fresh := openVault(t, store)
	if got, err := read(t, fresh, again.Chunks); err != nil || !bytes.Equal(got, b) {
		t.Errorf("b stored again: %d bytes, %v", len(got), err)
	}
	if got, err := read(t, fresh, resA.Chunks); err != nil || !bytes.Equal(got, a) {
		t.Errorf("a, deduplicated against condemned chunks before the condemnation: %d bytes, %v", len(got), err)
	}
	if n := countObjects(t, store, "sessions/"); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// TestDeadSession: a session not refreshed within its lease belongs to a
// writer that died: collection deletes it and no longer waits for it.
func TestDeadSession(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	write(t, v, sqlPages(63, 0, 1<<20/8192), vault.WriterOptions{})
	// a writer in another process that dies: its session is never
	// refreshed, its lease 50ms
	putRaw(t, store, "sessions/"+strings.Repeat("d", 64), []byte(`{"lease_ms":50}`))
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Condemned == 0 {
		t.Fatalf("collection: %+v, %v", st, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := v.Collect(ctx, vault.CollectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadSessions == 1 {
			if st.Chunks == 0 || st.Waiting != 0 {
				t.Errorf("collection that found the dead session: %+v; want it not waited for", st)
			}
			break
		}
		if st.Chunks != 0 || st.Waiting == 0 {
			t.Fatalf("collection while the session's lease runs: %+v; want it waited for", st)
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead session was never deleted")
		}
	}
	if n := countObjects(t, store, "sessions/"); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// TestSessionExpires: a session that cannot be refreshed within its lease
// expires: its writers fail, and Close says so, since collection may have
// taken the writer for dead.
func TestSessionExpires(t *testing.T) {
	store := &sessionFaults{Store: newDirStore(t)}
	v := initVault(t, store)
	ctx := t.Context()
	sess, err := v.OpenSession(ctx, vault.SessionOptions{Refresh: 10 * time.Millisecond, Lease: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := v.NewWriter(ctx, vault.WriterOptions{Session: sess})
	store.fail.Store(true)
	<-sess.Context().Done()
	if err := sess.Err(); !errors.Is(err, vault.ErrSessionExpired) {
		t.Errorf("session ended with %v; want ErrSessionExpired", err)
	}
	w.Write(sqlPages(64, 0, 64))
	if err := w.Close(); !errors.Is(err, vault.ErrSessionExpired) {
		t.Errorf("writer of an expired session closed with %v; want ErrSessionExpired", err)
	}
	store.fail.Store(false)
	if err := sess.Close(ctx); !errors.Is(err, vault.ErrSessionExpired) {
		t.Errorf("Close of an expired session: %v; want ErrSessionExpired", err)
	}
	if n := countObjects(t, store, "sessions/"); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	// a writer whose session is closed before it fails too
	sess, err = v.OpenSession(ctx, vault.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w = v.NewWriter(ctx, vault.WriterOptions{Session: sess})
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.Write(sqlPages(65, 0, 64))
	if err := w.Close(); err == nil {
		t.Error("a writer whose session was closed first succeeded")
	}
}

// sessionFaults fails Puts of sessions while fail is set.
type sessionFaults struct {
	blob.Store
	fail atomic.Bool
}

func (s *sessionFaults) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if s.fail.Load() && strings.HasPrefix(key, "sessions/") {
		return errInjected
	}
	return s.Store.Put(ctx, key, r, size)
}

// TestCollectDrafts: a draft keeps its chunks from collection until it is
// deleted, or until it is older than CollectOptions.DraftTTL.
func TestCollectDrafts(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	ctx := t.Context()
	data := sqlPages(66, 0, 1<<20/8192)
	res := write(t, v, data, vault.WriterOptions{})
	if err := v.PutDraft(ctx, "job-1", &vault.Manifest{Chunks: res.Chunks, Size: res.Size}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if st, err := v.Collect(ctx, vault.CollectOptions{DraftTTL: time.Hour}); err != nil || st.Condemned != 0 || st.Drafts != 0 {
			t.Fatalf("collection with a draft: %+v, %v; want nothing condemned", st, err)
		}
	}
	if got, err := read(t, v, res.Chunks); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the draft's stream: %d bytes, %v", len(got), err)
	}
	st, err := v.Collect(ctx, vault.CollectOptions{DraftTTL: time.Nanosecond})
	if err != nil || st.Drafts != 1 || st.Condemned == 0 {
		t.Fatalf("collection past the draft's time: %+v, %v; want it deleted and its chunks condemned", st, err)
	}
	if st, err := v.Collect(ctx, vault.CollectOptions{}); err != nil || st.Chunks != len(uniq(res.Chunks)) {
		t.Errorf("next collection: %+v, %v; want the draft's %d chunks deleted", st, err, len(uniq(res.Chunks)))
	}
}

// TestCollectOneAtATime: a collection that finds another running gives
// way.
func TestCollectOneAtATime(t *testing.T) {
	store := newDirStore(t)
	v := initVault(t, store)
	putRaw(t, store, "sessions/"+strings.Repeat("c", 64), []byte(`{"lease_ms":600000,"collector":true}`))
	if _, err := v.Collect(t.Context(), vault.CollectOptions{}); !errors.Is(err, vault.ErrCollecting) {
		t.Errorf("collection with another running: %v; want ErrCollecting", err)
	}
}

// TestIndexKeptAcrossSessions: a writer session keeps the index its
// process holds, without reading it again, only while a session of the
// process that opened before the last load is open still. After a gap
// with no session open, in which garbage collection condemned and then
// deleted chunks that index lists, the next session reads the index
// again: its writer stores those chunks anew rather than deduplicate
// against copies that are gone, and its commit finds every chunk.
func TestIndexKeptAcrossSessions(t *testing.T) {
	store := newDirStore(t)
	ctx := t.Context()
	coll := initVault(t, store)
	p := openVault(t, store) // the writers' process
	data := sqlPages(71, 0, 1<<20/8192)
	open := func() *vault.Session {
		t.Helper()
		sess, err := p.OpenSession(ctx, vault.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	closeAll := func(ss ...*vault.Session) {
		t.Helper()
		for _, s := range ss {
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeIn := func(sess *vault.Session) vault.Result {
		t.Helper()
		w := p.NewWriter(ctx, vault.WriterOptions{Session: sess})
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return w.Result()
	}

	s1 := open()
	r1 := writeIn(s1)
	closeAll(s1)
	if err := p.PutManifest(ctx, "a", &vault.Manifest{Chunks: r1.Chunks, Size: r1.Size}); err != nil {
		t.Fatal(err)
	}
	// sessions that overlap: the second is stored while the first is
	// open, which was stored before the last load started (its own)
	s2 := open()
	if n := vault.IndexReused(p); n != 0 {
		t.Errorf("%d sessions kept the index with no session open before the last load", n)
	}
	s3 := open()
	if n := vault.IndexReused(p); n != 1 {
		t.Errorf("%d sessions kept the index; want the second of two overlapping", n)
	}
	closeAll(s2, s3)

	// the gap: a's chunks become garbage, condemned, then deleted
	if err := p.DeleteManifest(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, err := coll.Collect(ctx, vault.CollectOptions{}); err != nil || st.Condemned == 0 {
		t.Fatalf("collection: %+v, %v; want a's chunks condemned", st, err)
	}
	if st, err := coll.Collect(ctx, vault.CollectOptions{}); err != nil || st.Chunks == 0 {
		t.Fatalf("collection: %+v, %v; want a's chunks deleted", st, err)
	}

	s5 := open()
	if n := vault.IndexReused(p); n != 1 {
		t.Errorf("the session after the gap kept the index (%d kept in all)", n)
	}
	r2 := writeIn(s5)
	closeAll(s5)
	if r2.NewChunks != len(uniq(r2.Chunks)) {
		t.Errorf("the writer after the gap stored %d of %d chunks; want all of them anew", r2.NewChunks, len(uniq(r2.Chunks)))
	}
	if err := p.PutManifest(ctx, "b", &vault.Manifest{Chunks: r2.Chunks, Size: r2.Size}); err != nil {
		t.Fatalf("commit after the gap: %v", err)
	}
	if got, err := read(t, openVault(t, store), r2.Chunks); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d of %d bytes, %v", len(got), len(data), err)
	}
}
