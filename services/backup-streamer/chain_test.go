package streamer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestChainBrokenTakesFull: when another tool took a log or a full, or the
// database was restored over, a log or differential coffer asks for cannot
// continue its chain. The streamer takes a full instead and reports why.
func TestChainBrokenTakesFull(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Chained"
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	full := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_FULL)
	e.inst.Commit(db, 5)
	log1 := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_LOG)

	// queue a backup with the chain coffer expects, as the scheduler does
	queue := func(typ cofferv1.BackupType, lastLog, diffBase, fork string) *cofferv1.RecoveryPoint {
		t.Helper()
		jid := event.NewJobID(time.Now())
		ref := &cofferv1.DatabaseRef{Instance: instName, Database: db}
		e.publish(ctx, cofferv1.SubjectWorkBackup, &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup", jid), jid, time.Now()),
			Database: ref, Type: typ, Reason: "scheduled", ExpectedLastLogLsn: lastLog, ExpectedDifferentialBaseLsn: diffBase,
			ExpectedRecoveryFork: fork}, event.ID("backup", jid))
		e.mustSucceed(jid)
		return e.mustRecoveryPoint(db, jid)
	}
	fork := full.GetBackup().GetLastRecoveryForkGuid()

	// the chain is whole: a log is a log
	e.inst.Commit(db, 5)
	log2 := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, log1.GetBackup().GetLastLsn(), "", fork)
	if log2.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_LOG {
		t.Fatalf("a log on a whole chain became %v", log2.GetBackup().GetType())
	}

	// another tool takes a log: coffer's next log becomes a full
	e.inst.Commit(db, 5)
	if _, err := e.sqlDB().ExecContext(ctx, "BACKUP LOG [Chained] TO DISK = 'NUL'"); err != nil {
		t.Fatal(err)
	}
	healed := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, log2.GetBackup().GetLastLsn(), "", fork)
	if healed.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL || healed.GetBackup().GetCopyOnly() {
		t.Fatalf("after a foreign log, the log job took %v, want a full", healed.GetBackup().GetType())
	}

	// another tool takes a full: coffer's next differential becomes a full
	if _, err := e.sqlDB().ExecContext(ctx, "BACKUP DATABASE [Chained] TO DISK = 'NUL'"); err != nil {
		t.Fatal(err)
	}
	d := queue(cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL, "", healed.GetBackup().GetCheckpointLsn(), fork)
	if d.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL {
		t.Fatalf("after a foreign full, the differential job took %v, want a full", d.GetBackup().GetType())
	}

	// restored over: a new recovery fork
	e.inst.Commit(db, 5)
	wrongFork := strings.Repeat("0", 8) + "-0000-4000-8000-" + strings.Repeat("0", 12)
	f := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, "", "", wrongFork)
	if f.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL {
		t.Fatalf("on another recovery fork, the log job took %v, want a full", f.GetBackup().GetType())
	}
}
