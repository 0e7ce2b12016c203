package streamer_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/event"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestCopyDeduplicates copies two fulls of one database to a second
// vault: the first copy stores its chunks there, the second, of nearly
// the same data, stores almost nothing new; a copy asked for again is a
// no-op; and the second restores exactly from the copy vault.
func TestCopyDeduplicates(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Sales"
	e.createFilled(db, 1024)
	dir := t.TempDir()
	rec := &cofferv1.VaultRecord{Name: "second", Dir: dir}
	if _, err := e.cat.Bucket(cofferv1.BucketVaults).Put(ctx, catalog.Key("second"), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.OpenNamed(ctx, rec, e.master); err == nil {
		t.Fatal("a named vault opened before it was created")
	}
	vs, err := daemon.NewVaults(e.vault, e.cat, e.master, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())

	copyOf := func(rp *cofferv1.RecoveryPoint, attempt int) (size, newBytes int64) {
		t.Helper()
		// the plan a policy's copy rule makes at the commit
		key := catalog.Key(instName, db, rp.GetId())
		rp.Copies = []*cofferv1.RecoveryPointCopy{{Vault: "second", DueAt: timestamppb.Now(), ExpiresAt: timestamppb.New(time.Now().Add(time.Hour))}}
		if _, err := e.cat.Bucket(cofferv1.BucketRecoveryPoints).Put(ctx, key, rp); err != nil {
			t.Fatal(err)
		}
		jid := event.NewJobID(time.Now()) + fmt.Sprint(attempt)
		e.publish(ctx, cofferv1.SubjectWorkCopy, &cofferv1.CopyRequested{Meta: event.Meta(event.ID("copy", jid), jid, time.Now()),
			Database: rp.GetDatabase(), RecoveryPoint: rp.GetId(), Vault: "second"}, event.ID("copy", jid))
		j := e.mustSucceed(jid)
		if _, err := fmt.Sscanf(j.Detail[len("recovery point "+rp.GetId()+" copied to vault second ("):], "%d new bytes", &newBytes); err != nil {
			t.Fatalf("job detail %q: %v", j.Detail, err)
		}
		return j.Bytes, newBytes
	}
	first := e.backupOK(ctx, db, full)
	if _, err := e.inst.Commit(db, 4); err != nil {
		t.Fatal(err)
	}
	second := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL)
	want := e.hash(db)

	size, stored := copyOf(first, 1)
	t.Logf("first copy: %d bytes, %d stored new", size, stored)
	if stored < size/2 {
		t.Errorf("the first copy stored %d new bytes of %d; want most of them", stored, size)
	}
	size, stored = copyOf(second, 2)
	t.Logf("second copy: %d bytes, %d stored new", size, stored)
	// the few rows committed between the fulls touch a few chunks (the
	// backup itself stored about as much new in the first vault)
	t.Logf("the second full stored %d new bytes in the first vault", second.GetNewBytes())
	if stored > size/2 {
		t.Errorf("the second copy stored %d new bytes of %d; want only what changed", stored, size)
	}
	if _, again := copyOf(second, 3); again != 0 {
		t.Errorf("a copy made again stored %d new bytes; want none", again)
	}

	jid := e.restoreWith(ctx, db, "Sales copy", func(r *cofferv1.RestoreRequested) { r.FromVault = "second" }, second.GetId())
	e.mustSucceed(jid)
	if got := e.hash("Sales copy"); got != want {
		t.Errorf("restored from the copy: content hash %s, want %s", got, want)
	}
}
