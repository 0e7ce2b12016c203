package streamer_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
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
	reasons := e.chainBreaks()
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

	// a log queued before coffer's last log committed expects the chain
	// where it was then: coffer's own log moved it, which breaks nothing
	e.inst.Commit(db, 5)
	log3 := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, log1.GetBackup().GetLastLsn(), "", fork)
	if b := log3.GetBackup(); b.GetType() != cofferv1.BackupType_BACKUP_TYPE_LOG || b.GetFirstLsn() != log2.GetBackup().GetLastLsn() {
		t.Fatalf("a log queued before coffer's previous log committed took %v from LSN %s, want a log from %s",
			b.GetType(), b.GetFirstLsn(), log2.GetBackup().GetLastLsn())
	}

	// another tool takes a log: coffer's next log becomes a full, though
	// it expects the chain where it was two of coffer's logs ago
	e.inst.Commit(db, 5)
	if _, err := e.sqlDB().ExecContext(ctx, "BACKUP LOG [Chained] TO DISK = @p1", filepath.Join(t.TempDir(), "othertool.trn")); err != nil {
		t.Fatal(err)
	}
	healed := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, log2.GetBackup().GetLastLsn(), "", fork)
	if healed.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL || healed.GetBackup().GetCopyOnly() {
		t.Fatalf("after a foreign log, the log job took %v, want a full", healed.GetBackup().GetType())
	}
	// the reason names the foreign backup as msdb recorded it
	if r := reasons(healed.GetJobId()); !strings.Contains(r, "BACKUP LOG to") || !strings.Contains(r, "othertool.trn") {
		t.Errorf("chain-broken reason for a foreign log: %q, want msdb's BACKUP LOG to othertool.trn", r)
	}

	// a log queued before that full healed the chain expects it where it
	// was before the foreign log: the full of coffer's since is its base,
	// so it is a log, not one more full
	e.inst.Commit(db, 5)
	after := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, log3.GetBackup().GetLastLsn(), "", fork)
	if b := after.GetBackup(); b.GetType() != cofferv1.BackupType_BACKUP_TYPE_LOG {
		t.Fatalf("a log queued before the healing full took %v, want a log", b.GetType())
	}

	// another tool takes a full: coffer's next differential becomes a full
	if _, err := e.sqlDB().ExecContext(ctx, "BACKUP DATABASE [Chained] TO DISK = @p1", filepath.Join(t.TempDir(), "othertool.bak")); err != nil {
		t.Fatal(err)
	}
	d := queue(cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL, "", healed.GetBackup().GetCheckpointLsn(), fork)
	if d.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL {
		t.Fatalf("after a foreign full, the differential job took %v, want a full", d.GetBackup().GetType())
	}
	if r := reasons(d.GetJobId()); !strings.Contains(r, "BACKUP DATABASE to") || !strings.Contains(r, "othertool.bak") {
		t.Errorf("chain-broken reason for a foreign full: %q, want msdb's BACKUP DATABASE to othertool.bak", r)
	}

	// restored over: a new recovery fork
	e.inst.Commit(db, 5)
	wrongFork := strings.Repeat("0", 8) + "-0000-4000-8000-" + strings.Repeat("0", 12)
	f := queue(cofferv1.BackupType_BACKUP_TYPE_LOG, "", "", wrongFork)
	if f.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL {
		t.Fatalf("on another recovery fork, the log job took %v, want a full", f.GetBackup().GetType())
	}
	if r := reasons(f.GetJobId()); !strings.Contains(r, "restored over") {
		t.Errorf("chain-broken reason for a new fork: %q, want it to say the database was restored over", r)
	}
}

// chainBreaks collects ChainBroken events; the returned func waits for
// the one of a job and returns its reason.
func (e *env) chainBreaks() func(job string) string {
	var mu sync.Mutex
	got := map[string]string{}
	sub, err := e.bus.Consume(e.t.(*testing.T).Context(), bus.ConsumerSpec{Stream: cofferv1.StreamJobs, Durable: "test-chain",
		FilterSubjects: []string{cofferv1.SubjectChainBroken}}, func(_ context.Context, m *bus.Message) error {
		var ev cofferv1.ChainBroken
		if err := m.Decode(&ev); err != nil {
			return err
		}
		mu.Lock()
		got[ev.GetMeta().GetJobId()] = ev.GetReason()
		mu.Unlock()
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(sub.Stop)
	return func(job string) string {
		var r string
		waitFor(e.t, 10*time.Second, "chain-broken event of "+job, func() bool {
			mu.Lock()
			defer mu.Unlock()
			r = got[job]
			return r != ""
		})
		return r
	}
}

// TestAvailabilityGroupReplica: a backup the scheduler routed to another
// replica runs there (SQL Server on the secondary records it), and its
// recovery point belongs to the protected database; the log chain
// continues across replicas.
func TestAvailabilityGroupReplica(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	const db = "Orders"
	sec := e.addInstance("sql02", mssqlsim.Config{ServerName: "SIMSQL02"})
	if err := e.inst.CreateDatabase(db, mssqlsim.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startCommitter()
	e.startStreamer(e.streamerConfig())
	full := e.backupOK(ctx, db, cofferv1.BackupType_BACKUP_TYPE_FULL)
	ag, err := mssqlsim.NewAvailabilityGroup("ag1", mssqlsim.PreferSecondary, e.inst, sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddDatabase(db); err != nil {
		t.Fatal(err)
	}
	e.inst.Commit(db, 5)
	jid := event.NewJobID(time.Now())
	e.publish(ctx, cofferv1.SubjectWorkBackup, &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup", jid), jid, time.Now()),
		Database: &cofferv1.DatabaseRef{Instance: instName, Database: db}, Type: cofferv1.BackupType_BACKUP_TYPE_LOG,
		Reason: "scheduled", ReplicaInstance: "sql02"}, event.ID("backup", jid))
	e.mustSucceed(jid)
	rp := e.mustRecoveryPoint(db, jid)
	if got := rp.GetBackup().GetServerName(); got != "SIMSQL02" {
		t.Errorf("the log ran on %q, want the secondary SIMSQL02", got)
	}
	if rp.GetDatabase().GetInstance() != instName {
		t.Errorf("the recovery point belongs to %q, want the protected database's instance %q", rp.GetDatabase().GetInstance(), instName)
	}
	if rp.GetBackup().GetFirstLsn() != full.GetBackup().GetLastLsn() && rp.GetBackup().GetDatabaseBackupLsn() != full.GetBackup().GetCheckpointLsn() {
		t.Errorf("the secondary's log does not continue the primary's full: log %s–%s, full ends %s",
			rp.GetBackup().GetFirstLsn(), rp.GetBackup().GetLastLsn(), full.GetBackup().GetLastLsn())
	}

	// a full routed to the secondary is refused by SQL Server (3059), visibly
	jid = event.NewJobID(time.Now())
	e.publish(ctx, cofferv1.SubjectWorkBackup, &cofferv1.BackupRequested{Meta: event.Meta(event.ID("backup", jid), jid, time.Now()),
		Database: &cofferv1.DatabaseRef{Instance: instName, Database: db}, Type: cofferv1.BackupType_BACKUP_TYPE_FULL,
		Reason: "scheduled", ReplicaInstance: "sql02"}, event.ID("backup", jid))
	if j := e.mustFail(jid); !strings.Contains(j.GetError(), "sql02") {
		t.Errorf("a full on the secondary failed with %q, want the replica named", j.GetError())
	}
}
