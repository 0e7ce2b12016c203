package streamer_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestRestoreStopPastLastLog: a STOPAT past the last record of the last
// log is accepted by SQL Server, which says so (4322) and leaves the
// database RESTORING. The restore must fail and say why, not report
// success; a database it created is dropped.
func TestRestoreStopPastLastLog(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Past"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	fullRP := e.backupOK(ctx, db, full)
	e.inst.Commit(db, 5)
	logRP := e.backupOK(ctx, db, logb)

	stop := logRP.GetBackup().GetBackupFinish().AsTime().Add(time.Hour)
	j := e.mustFail(e.restoreWith(ctx, db, "Past copy", func(r *cofferv1.RestoreRequested) {
		r.StopAt = timestamppb.New(stop)
	}, fullRP.Id, logRP.Id))
	for _, want := range []string{"RESTORING, not ONLINE", "4322", "was dropped"} {
		if !strings.Contains(j.Error, want) {
			t.Errorf("reason %q; want it to say %q", j.Error, want)
		}
	}
	if e.exists("Past copy") {
		t.Error("a database left RESTORING by the failed restore is still there")
	}
}

// TestRestoreWithoutDefaultPaths: an instance whose default data path is
// not set gets no bare file names in MOVE; the restore is refused with
// what to do, and nothing is created.
func TestRestoreWithoutDefaultPaths(t *testing.T) {
	e := newEnv(t, envOptions{sim: mssqlsim.Config{NoDefaultPaths: true}})
	ctx := t.Context()
	const db = "NoPaths"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	fullRP := e.backupOK(ctx, db, full)

	j := e.mustFail(e.restoreWith(ctx, db, "NoPaths copy", nil, fullRP.Id))
	if !strings.Contains(j.Error, "no default data path") || !strings.Contains(j.Error, "--data-path") {
		t.Errorf("reason %q; want it to name the missing default data path and the flags that replace it", j.Error)
	}
	if e.exists("NoPaths copy") {
		t.Error("a database was created")
	}
	e.mustSucceed(e.restoreWith(ctx, db, "NoPaths copy", func(r *cofferv1.RestoreRequested) {
		r.DataPath, r.LogPath = "/srv/data", "/srv/log"
	}, fullRP.Id))
}

// TestOverwriteInAvailabilityGroup: SQL Server restores no database of an
// availability group. An overwrite is refused before anything runs: no
// tail-log backup leaves the database RESTORING.
func TestOverwriteInAvailabilityGroup(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Grouped"
	sec := e.addInstance("sql02", mssqlsim.Config{ServerName: "SIMSQL02"})
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	fullRP := e.backupOK(ctx, db, full)
	ag, err := mssqlsim.NewAvailabilityGroup("ag1", mssqlsim.PreferPrimary, e.inst, sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddDatabase(db); err != nil {
		t.Fatal(err)
	}
	e.inst.Commit(db, 5)
	e.backupOK(ctx, db, logb)
	e.inst.Commit(db, 5)

	j := e.mustFail(e.restoreWith(ctx, db, db, func(r *cofferv1.RestoreRequested) { r.Overwrite = true }, fullRP.Id))
	for _, want := range []string{`availability group "ag1"`, "nothing was changed", "REMOVE DATABASE"} {
		if !strings.Contains(j.Error, want) {
			t.Errorf("reason %q; want it to say %q", j.Error, want)
		}
	}
	if st, err := e.inst.DatabaseState(db); err != nil || st != mssqlsim.Online {
		t.Errorf("database %q is %v (%v) after the refused overwrite; want ONLINE", db, st, err)
	}
}

// TestDifferentialBaseByGUID: a transaction open across a full moves the
// differential base past the full's checkpoint, as on SQL Server. The
// differential is linked to its full by GUID (the full's BackupSetGUID is
// the differential's DifferentialBaseGUID and the database's
// differential_base_guid), so it stays a differential and restores on its
// full.
func TestDifferentialBaseByGUID(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Spanning"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	e.inst.Commit(db, 5)
	end, err := e.inst.BeginTransaction(db)
	if err != nil {
		t.Fatal(err)
	}
	fullRP := e.backupOK(ctx, db, full)
	end()
	fb := fullRP.GetBackup()
	if fb.GetBackupSetGuid() == "" || fb.GetFirstLsn() == fb.GetCheckpointLsn() {
		t.Fatalf("full: backup set %q, first LSN %s, checkpoint %s; want a GUID and a first LSN before the checkpoint (the open transaction)",
			fb.GetBackupSetGuid(), fb.GetFirstLsn(), fb.GetCheckpointLsn())
	}
	e.inst.Commit(db, 5)

	// queued as the scheduler queues it, with what coffer's last full says
	jid := event.NewJobID(time.Now())
	e.publish(ctx, cofferv1.SubjectWorkBackup, &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup", jid), jid, time.Now()),
		Database: &cofferv1.DatabaseRef{Instance: instName, Database: db}, Type: cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL,
		Reason: "scheduled", ExpectedDifferentialBaseLsn: fb.GetCheckpointLsn(), ExpectedDifferentialBaseGuid: fb.GetBackupSetGuid(),
		ExpectedRecoveryFork: fb.GetLastRecoveryForkGuid()}, event.ID("backup", jid))
	e.mustSucceed(jid)
	diff := e.mustRecoveryPoint(db, jid)
	if got := diff.GetBackup().GetType(); got != cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL || diff.GetChainBreak() != "" {
		t.Fatalf("the differential became a %v (chain break %q); want a differential", got, diff.GetChainBreak())
	}
	if diff.GetBackup().GetDifferentialBaseGuid() != fb.GetBackupSetGuid() {
		t.Errorf("differential base %s; want the full's backup set %s", diff.GetBackup().GetDifferentialBaseGuid(), fb.GetBackupSetGuid())
	}
	if diff.GetBackup().GetDifferentialBaseLsn() == fb.GetCheckpointLsn() {
		t.Errorf("differential base LSN %s equals the full's checkpoint: the open transaction did not move it", fb.GetCheckpointLsn())
	}
	want := e.hash(db)
	e.mustSucceed(e.restore(ctx, db, "Spanning copy", false, fullRP.Id, diff.Id))
	if got := e.hash("Spanning copy"); got != want {
		t.Errorf("content after full and differential %s; want %s", got, want)
	}
}
