package gateway

import (
	"cmp"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/daemon"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The JSON shapes of the REST API. They are the API's contract with the
// CLI, the dashboard and scripts, kept apart from the event contracts so
// either can change without the other.

// Instance is a registered instance. It never carries credentials.
type Instance struct {
	Name          string     `json:"name"`
	Healthy       bool       `json:"healthy"`
	Reason        string     `json:"reason,omitempty"`
	Fix           string     `json:"fix,omitempty"`
	ServerName    string     `json:"server_name,omitempty"`
	Version       string     `json:"version,omitempty"`
	Edition       string     `json:"edition,omitempty"`
	Sysadmin      bool       `json:"sysadmin"`
	Databases     int        `json:"databases"`
	RegisteredAt  *time.Time `json:"registered_at,omitempty"`
	DiscoveredAt  *time.Time `json:"discovered_at,omitempty"`
	Autoprotect   bool       `json:"autoprotect"`
	AutoprotectTo string     `json:"autoprotect_policy,omitempty"`
	// Mode is how backups leave the instance: auto, url or disk.
	Mode string `json:"mode"`
	// Registration names the registration the record is from: the answer
	// to an AddInstance carries it at once, the listing once discovery
	// has recorded that registration.
	Registration string `json:"registration,omitempty"`
}

// AddInstance registers an instance.
type AddInstance struct {
	Name string `json:"name"`
	DSN  string `json:"dsn"`
	// Mode is how backups leave the instance: "" or "auto" (URL mode for
	// SQL Server 2022 and later when the streamer serves an S3 endpoint),
	// "url" or "disk".
	Mode string `json:"mode,omitempty"`
	// Test, when set, registers nothing: the gateway connects with DSN and
	// answers (200) what it found, the server's name, version and edition
	// and whether the login is sysadmin, or why it could not connect and
	// what to do. The dashboard tests an instance so before saving it.
	Test bool `json:"test,omitempty"`
}

// URLCheck is the outcome of an instance's URL mode check: whether SQL
// Server reaches and trusts a backup-streamer's S3 endpoint, tried with a
// copy-only backup of model (which touches no backup chain) to a
// throwaway URL.
type URLCheck struct {
	Instance string `json:"instance"`
	// Streamer is the host:port of the endpoint checked, as SQL Server is
	// given it; empty when the streamer serves none.
	Streamer string `json:"streamer,omitempty"`
	// Mode is how the instance's jobs take their backups, url or disk, and
	// ModeReason why.
	Mode       string `json:"mode,omitempty"`
	ModeReason string `json:"mode_reason,omitempty"`
	// OK is true when the instance's jobs can run in their mode: in URL
	// mode SQL Server backed up to the endpoint; disk mode needs no check.
	OK bool `json:"ok"`
	// Problem says what stops the jobs, and Fix what to do about it.
	Problem string `json:"problem,omitempty"`
	Fix     string `json:"fix,omitempty"`
}

// Autoprotect turns auto-protection on or off.
type Autoprotect struct {
	Enabled bool   `json:"enabled"`
	Policy  string `json:"policy,omitempty"`
}

// Database is one database of an instance with its protection.
type Database struct {
	Instance        string     `json:"instance"`
	Name            string     `json:"name"`
	State           string     `json:"state"`
	RecoveryModel   string     `json:"recovery_model"`
	ReadOnly        bool       `json:"read_only"`
	SizeBytes       int64      `json:"size_bytes"`
	Protected       bool       `json:"protected"`
	Policy          string     `json:"policy,omitempty"`
	ProtectionState string     `json:"protection_state,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	Created         *time.Time `json:"created,omitempty"`
	// Vault is the named vault a protected database's backups go to;
	// empty means the default vault.
	Vault string `json:"vault,omitempty"`
}

// DatabaseRequest names one database; a protect may name many instead
// (Databases).
type DatabaseRequest struct {
	Instance string `json:"instance,omitempty"`
	Database string `json:"database,omitempty"`
	Policy   string `json:"policy,omitempty"`
	// Databases, on a protect instead of Instance and Database, names any
	// number of databases, each INSTANCE/DATABASE or a pattern: * matches
	// any run of characters but '/', ? one character, [abc] one of a
	// class, ignoring case ("sql1/*" is every database of sql1, "*/Sales"
	// every Sales). Every name must name at least one database, or nothing
	// is protected. The answer lists the databases in Protected.
	// On an unprotect, Databases names many as on a protect; the answer
	// lists them in Unprotected, each with its DeleteJob.
	Databases   []string          `json:"databases,omitempty"`
	Protected   []DatabaseRequest `json:"protected,omitempty"`
	Unprotected []DatabaseRequest `json:"unprotected,omitempty"`
	// Vault, on a protect, names the vault the database's backups go to
	// (coffer vault list); empty means the default vault.
	Vault string `json:"vault,omitempty"`
	// DeleteData, on an unprotect, deletes every recovery point of the
	// database too: a soft delete, undone by an undelete within the
	// committer's soft-delete window. The answer's DeleteJob is the job
	// that records it.
	DeleteData bool   `json:"delete_data,omitempty"`
	DeleteJob  string `json:"delete_job,omitempty"`
	// By says who asks for the deletion, for the record; the gateway adds
	// the caller's address.
	By string `json:"by,omitempty"`
}

// RecoveryPointsRequest deletes or undeletes recovery points by id. A
// delete is a soft delete: the points are hidden from listings and
// restores, and an undelete brings them back (with the deleted points they
// need) until the committer's soft-delete window ends; then garbage
// collection deletes them.
type RecoveryPointsRequest struct {
	RecoveryPoints []string `json:"recovery_points"`
	// WithDependents, on a delete, deletes too the kept points that could
	// not be restored without the named ones; without it such a delete is
	// refused, naming them.
	WithDependents bool `json:"with_dependents,omitempty"`
	// By says who asks, for the record; the gateway adds the caller's
	// address.
	By string `json:"by,omitempty"`
}

// BackupRequest asks for an on-demand backup.
type BackupRequest struct {
	Instance string `json:"instance,omitempty"`
	Database string `json:"database,omitempty"`
	// Databases, instead of Instance and Database, names any number of
	// databases as a protect's Databases does; each gets a backup of Type,
	// a job each (the answer's Jobs, in the order of its Databases).
	Databases []string `json:"databases,omitempty"`
	// Type is full, copy_only, differential or log.
	Type string `json:"type"`
}

// RestoreRequest asks for a restore.
type RestoreRequest struct {
	Instance string `json:"instance"`
	Database string `json:"database"`
	// The target, exactly one of: Point, the end of a recovery point;
	// Time, a moment (to the millisecond); Latest, the latest moment the
	// backups reach.
	Point  string     `json:"point,omitempty"`
	Time   *time.Time `json:"time,omitempty"`
	Latest bool       `json:"latest,omitempty"`
	// Mark stops at the latest transaction marked so (BEGIN TRAN ... WITH
	// MARK), including it, or just before it with BeforeMark.
	Mark           string `json:"mark,omitempty"`
	BeforeMark     bool   `json:"before_mark,omitempty"`
	TargetInstance string `json:"target_instance,omitempty"`
	TargetDatabase string `json:"target_database"`
	Overwrite      bool   `json:"overwrite,omitempty"`
	DataPath       string `json:"data_path,omitempty"`
	LogPath        string `json:"log_path,omitempty"`
	// NoRecovery leaves the database RESTORING, ready for more logs.
	NoRecovery bool `json:"no_recovery,omitempty"`
	// DryRun returns the plan without running it.
	DryRun bool `json:"dry_run,omitempty"`
	// ToDirectory restores as files: the backup files, verified, and a
	// restore.sql that applies them, written into this absolute directory
	// on the machine that runs the backup-streamer. TargetDatabase is then
	// the name the script restores to (default: the source's).
	ToDirectory string `json:"to_directory,omitempty"`
	// FromVault reads every recovery point from this vault, where each
	// is or has a copy; empty reads each from its own vault, falling back
	// to a copy when it cannot be read there.
	FromVault string `json:"from_vault,omitempty"`
}

// Accepted answers a request that started a job (or, for a dry run, would
// have).
type Accepted struct {
	JobID string   `json:"job_id,omitempty"`
	Plan  []string `json:"plan,omitempty"`
	// Jobs are the jobs of a request that started one per database (a
	// delete or undelete of recovery points); JobID is the first.
	Jobs []string `json:"jobs,omitempty"`
	// Databases are the databases of Jobs, in order
	// (INSTANCE/DATABASE), on a backup of many.
	Databases []string `json:"databases,omitempty"`
	// Steps, StopAt and At describe a restore's plan: the backups in apply
	// order, where the last log stops, and the moment the database will be
	// as of.
	Steps          []PlanStep `json:"steps,omitempty"`
	StopAt         *time.Time `json:"stop_at,omitempty"`
	StopAtMark     string     `json:"stop_at_mark,omitempty"`
	StopBeforeMark string     `json:"stop_before_mark,omitempty"`
	At             *time.Time `json:"at,omitempty"`
	// Script is the T-SQL that applies the files of a restore as files.
	Script string `json:"script,omitempty"`
}

// PlanStep is one backup a restore applies.
type PlanStep struct {
	RecoveryPoint string    `json:"recovery_point"`
	Type          string    `json:"type"`
	Taken         time.Time `json:"taken"`
}

// RecoveryRange is a continuous stretch of time a database can be restored
// to any moment of.
type RecoveryRange struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Start string    `json:"start"`
	End   string    `json:"end"`
	// Break says why the moments after To, up to the next range, cannot be
	// restored.
	Break string `json:"break,omitempty"`
}

// RecoveryPoint is one committed backup.
type RecoveryPoint struct {
	ID          string     `json:"id"`
	Instance    string     `json:"instance"`
	Database    string     `json:"database"`
	Type        string     `json:"type"`
	CopyOnly    bool       `json:"copy_only"`
	FirstLSN    string     `json:"first_lsn"`
	LastLSN     string     `json:"last_lsn"`
	Checkpoint  string     `json:"checkpoint_lsn,omitempty"`
	DiffBase    string     `json:"differential_base_lsn,omitempty"`
	Start       *time.Time `json:"backup_start,omitempty"`
	Finish      *time.Time `json:"backup_finish,omitempty"`
	Size        int64      `json:"size"`
	StoredBytes int64      `json:"stored_bytes"`
	NewBytes    int64      `json:"new_bytes"`
	Chunks      int32      `json:"chunks"`
	// Stripes is how many URLs SQL Server wrote the backup to at once,
	// when more than one.
	Stripes      int32      `json:"stripes,omitempty"`
	JobID        string     `json:"job_id"`
	CommittedAt  *time.Time `json:"committed_at,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	ServerName   string     `json:"server_name,omitempty"`
	RecoveryFork string     `json:"recovery_fork,omitempty"`
	Tags         []string   `json:"tags,omitempty"`
	OnDemand     bool       `json:"on_demand,omitempty"`
	Policy       string     `json:"policy,omitempty"`
	// Vault names the vault the point is in; empty means the default.
	// Copies name the vaults holding a copy of it (a policy's copy rule).
	Vault  string   `json:"vault,omitempty"`
	Copies []string `json:"copies,omitempty"`
	// ChainBreak, when set, says why this point's chain is broken: it
	// cannot be restored from the points kept.
	ChainBreak string `json:"chain_break,omitempty"`
	// HealsBreak, on a full, says why the chain broke before it (another
	// tool's backup, a restore over the database, SIMPLE recovery): no
	// moment between the point before it and this full can be restored.
	HealsBreak string `json:"heals_chain_break,omitempty"`
	// Verified is the latest test restore of this point.
	Verified *Verification `json:"verified,omitempty"`
	// Deleted, on a point a person deleted (listed only when asked for),
	// is when, DeletedBy by whom, and RestorableUntil the end of its
	// soft-delete window: until then an undelete brings it back.
	Deleted         *time.Time `json:"deleted_at,omitempty"`
	DeletedBy       string     `json:"deleted_by,omitempty"`
	RestorableUntil *time.Time `json:"restorable_until,omitempty"`
}

// Verification is the outcome of a test restore.
type Verification struct {
	At         *time.Time `json:"at"`
	Job        string     `json:"job"`
	Instance   string     `json:"instance"`
	Passed     bool       `json:"passed"`
	Detail     string     `json:"detail"`
	RestoredTo *time.Time `json:"restored_to,omitempty"`
}

// VerifyRequest asks for a test restore of a database now: its latest
// moment and a random one, on Instance (default: its own).
type VerifyRequest struct {
	Instance        string `json:"instance"`
	Database        string `json:"database"`
	ScratchInstance string `json:"scratch_instance,omitempty"`
}

// Job is one unit of work.
type Job struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	State         string     `json:"state"`
	Instance      string     `json:"instance,omitempty"`
	Database      string     `json:"database,omitempty"`
	BackupType    string     `json:"backup_type,omitempty"`
	Target        string     `json:"target,omitempty"`
	Detail        string     `json:"detail,omitempty"`
	Error         string     `json:"error,omitempty"`
	Service       string     `json:"service,omitempty"`
	Bytes         int64      `json:"bytes"`
	Percent       float64    `json:"percent"`
	Step          string     `json:"step,omitempty"`
	RecoveryPoint string     `json:"recovery_point,omitempty"`
	TraceID       string     `json:"trace_id,omitempty"`
	Created       *time.Time `json:"created,omitempty"`
	Updated       *time.Time `json:"updated,omitempty"`
	// CancelRequestedBy is who asked to cancel the running job, which
	// stops soon; CancelledBy who cancelled it, once it is cancelled.
	CancelRequestedBy string `json:"cancel_requested_by,omitempty"`
	CancelledBy       string `json:"cancelled_by,omitempty"`
	// NoCancel says why the running job can no longer be cancelled.
	NoCancel string `json:"no_cancel,omitempty"`
	// Steps and Log are the job's steps and log lines, oldest first, in
	// GET /api/v1/jobs/{id} only.
	Steps []JobStep    `json:"steps,omitempty"`
	Log   []JobLogLine `json:"log,omitempty"`
}

// JobStep is one step of a job. Ended is unset while it runs; Seconds is
// its duration (so far, while it runs); Outcome is done, or the job's
// final state for its last step.
type JobStep struct {
	Name    string     `json:"name"`
	Began   *time.Time `json:"began,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	Seconds float64    `json:"seconds"`
	Outcome string     `json:"outcome,omitempty"`
}

// JobLogLine is one line a service logged about a job.
type JobLogLine struct {
	Time    *time.Time `json:"time,omitempty"`
	Level   string     `json:"level"`
	Service string     `json:"service"`
	Message string     `json:"message"`
}

// Done reports whether the job has ended.
func (j Job) Done() bool {
	return j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
}

func ts(t *timestamppb.Timestamp) *time.Time {
	if t == nil {
		return nil
	}
	v := t.AsTime()
	return &v
}

var backupTypeNames = map[cofferv1.BackupType]string{
	cofferv1.BackupType_BACKUP_TYPE_FULL:           "full",
	cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:   "differential",
	cofferv1.BackupType_BACKUP_TYPE_LOG:            "log",
	cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL: "copy_only",
}

// ParseBackupType reads full, copy_only (or copy-only), differential (or
// diff) and log.
func ParseBackupType(s string) (cofferv1.BackupType, bool) {
	switch s {
	case "full", "":
		return cofferv1.BackupType_BACKUP_TYPE_FULL, true
	case "copy_only", "copy-only", "copyonly":
		return cofferv1.BackupType_BACKUP_TYPE_COPY_ONLY_FULL, true
	case "differential", "diff":
		return cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL, true
	case "log":
		return cofferv1.BackupType_BACKUP_TYPE_LOG, true
	}
	return 0, false
}

// jobKinds are the job kinds as the API names them.
var jobKinds = map[cofferv1.JobKind]string{cofferv1.JobKind_JOB_KIND_BACKUP: "backup", cofferv1.JobKind_JOB_KIND_RESTORE: "restore",
	cofferv1.JobKind_JOB_KIND_PROTECT: "protect", cofferv1.JobKind_JOB_KIND_DISCOVER: "discover",
	cofferv1.JobKind_JOB_KIND_DELETE: "delete", cofferv1.JobKind_JOB_KIND_VERIFY: "verify",
	cofferv1.JobKind_JOB_KIND_REBUILD: "rebuild", cofferv1.JobKind_JOB_KIND_VAULT_CREATE: "vault-create",
	cofferv1.JobKind_JOB_KIND_COPY: "copy"}

func jobFromProto(j *cofferv1.Job) Job {
	out := Job{
		ID: j.GetId(), Kind: jobKinds[j.GetKind()],
		State: map[cofferv1.JobState]string{cofferv1.JobState_JOB_STATE_QUEUED: "queued", cofferv1.JobState_JOB_STATE_RUNNING: "running",
			cofferv1.JobState_JOB_STATE_SUCCEEDED: "succeeded", cofferv1.JobState_JOB_STATE_FAILED: "failed",
			cofferv1.JobState_JOB_STATE_CANCELLED: "cancelled"}[j.GetState()],
		Instance: j.GetDatabase().GetInstance(), Database: j.GetDatabase().GetDatabase(), BackupType: backupTypeNames[j.GetBackupType()],
		Detail: j.GetDetail(), Error: j.GetError(), Service: j.GetService(), Bytes: j.GetBytes(), Percent: j.GetPercent(),
		Step: j.GetStep(), RecoveryPoint: j.GetRecoveryPoint(), TraceID: j.GetTraceId(), Created: ts(j.GetCreatedAt()), Updated: ts(j.GetUpdatedAt()),
		CancelRequestedBy: j.GetCancelRequestedBy(), CancelledBy: j.GetCancelledBy(), NoCancel: j.GetNoCancel(),
	}
	if t := j.GetTarget(); t != nil && t.GetDatabase() != "" {
		out.Target = t.GetInstance() + "/" + t.GetDatabase()
	}
	return out
}

func rpFromProto(r *cofferv1.RecoveryPoint) RecoveryPoint {
	b := r.GetBackup()
	out := RecoveryPoint{
		ID: r.GetId(), Instance: r.GetDatabase().GetInstance(), Database: r.GetDatabase().GetDatabase(),
		Type: backupTypeNames[b.GetType()], CopyOnly: b.GetCopyOnly(), FirstLSN: b.GetFirstLsn(), LastLSN: b.GetLastLsn(),
		Checkpoint: b.GetCheckpointLsn(), DiffBase: b.GetDifferentialBaseLsn(), Start: ts(b.GetBackupStart()),
		Finish: ts(b.GetBackupFinish()), Size: r.GetSize(), StoredBytes: r.GetStoredBytes(), NewBytes: r.GetNewBytes(),
		Chunks: r.GetChunks(), Stripes: r.GetStripes(), JobID: r.GetJobId(), CommittedAt: ts(r.GetCommittedAt()), ExpiresAt: ts(r.GetExpiresAt()),
		ServerName: b.GetServerName(), RecoveryFork: b.GetLastRecoveryForkGuid(),
		Tags: r.GetTags(), OnDemand: r.GetOnDemand(), Policy: r.GetPolicy(), Vault: r.GetVault(), HealsBreak: r.GetChainBreak(),
		Verified: verificationFromProto(r.GetVerification()),
		Deleted:  ts(r.GetDeletedAt()), DeletedBy: r.GetDeletedBy(), RestorableUntil: ts(r.GetPurgeAfter()),
	}
	for _, c := range r.GetCopies() {
		if c.GetCommittedAt() != nil {
			out.Copies = append(out.Copies, cmp.Or(c.GetVault(), daemon.DefaultVault))
		}
	}
	return out
}

func verificationFromProto(v *cofferv1.Verification) *Verification {
	if v == nil {
		return nil
	}
	return &Verification{At: ts(v.GetAt()), Job: v.GetJobId(), Instance: v.GetInstance(), Passed: v.GetPassed(),
		Detail: v.GetDetail(), RestoredTo: ts(v.GetRestoredTo())}
}
