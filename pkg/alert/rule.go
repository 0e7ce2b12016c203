package alert

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Rule names a kind of alert.
type Rule string

// The rules.
const (
	JobFailed         Rule = "job_failed"
	ChainBreak        Rule = "chain_break"
	RPO               Rule = "rpo"
	VerifyFailed      Rule = "verify_failed"
	InstanceUnhealthy Rule = "instance_unhealthy"
	VaultCheckFailed  Rule = "vault_check_failed"
)

// Rules is every rule, in the order the default settings list them.
var Rules = []Rule{JobFailed, ChainBreak, RPO, VerifyFailed, InstanceUnhealthy, VaultCheckFailed}

// Change is what one event or evaluation says of one alert: that its
// condition holds (Open) or has cleared.
type Change struct {
	Rule     Rule
	Instance string
	// Database is empty for an instance's alert.
	Database string
	// Vault is the vault a VaultCheckFailed alert is about (Instance and
	// Database are empty).
	Vault string
	// Kind is the failed job's kind, for JobFailed.
	Kind cofferv1.JobKind
	Open bool
	// Notice: nothing will report the condition cleared (a failed job of
	// a kind whose success no event reports, a poison message), so the
	// alert is sent once and closed at once, with no resolution. Each
	// notice is an alert of its own.
	Notice bool
	// Summary is the line a person reads first; Detail what the event
	// said. Both are kept from the change that opens the alert.
	Summary string
	Detail  string
	// At is when the condition was observed (the event's time).
	At time.Time
	// By is the event id (or evaluation) that observed it.
	By string
}

// Key is the alert's key in the `alerts` bucket: its rule and subject.
func (c Change) Key() string {
	if c.Notice {
		return catalog.Key(string(c.Rule), c.Instance, c.Database, kindName(c.Kind), c.By)
	}
	switch c.Rule {
	case JobFailed:
		return catalog.Key(string(c.Rule), c.Instance, c.Database, kindName(c.Kind))
	case VaultCheckFailed:
		return catalog.Key(string(c.Rule), c.Vault)
	}
	return catalog.Key(string(c.Rule), c.Instance, c.Database)
}

// kindName is a job kind as a person reads it: "backup", "protect".
func kindName(k cofferv1.JobKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "JOB_KIND_"))
}

// subject names what an alert is about, as a person reads it.
func subject(instance, database string) string {
	if database == "" {
		return "instance " + instance
	}
	return fmt.Sprintf("database [%s] on %s", strings.ReplaceAll(database, "]", "]]"), instance)
}

func timeOf(m *cofferv1.EventMeta) time.Time {
	if m.GetTime() == nil {
		return time.Time{}
	}
	return m.GetTime().AsTime()
}

// resolvable are the job kinds whose next success an event reports.
var resolvable = map[cofferv1.JobKind]bool{
	cofferv1.JobKind_JOB_KIND_BACKUP:   true, // RecoveryPointCommitted
	cofferv1.JobKind_JOB_KIND_PROTECT:  true, // ProtectionConfigured
	cofferv1.JobKind_JOB_KIND_RESTORE:  true, // RestoreCompleted
	cofferv1.JobKind_JOB_KIND_VERIFY:   true, // VerifyCompleted, every result passed
	cofferv1.JobKind_JOB_KIND_DISCOVER: true, // InstanceHealthChanged, healthy
}

// OnJobFailed opens a job_failed alert for the job's database (a
// restore's target). A failure no success will clear (a delete, a
// rebuild, a poison message, which names no database) is a notice. A
// job a person cancelled (cancelled_by) did not fail: no alert.
func OnJobFailed(ev *cofferv1.JobFailed) []Change {
	if ev.GetCancelledBy() != "" {
		return nil
	}
	ref := ev.GetDatabase()
	if ev.GetKind() == cofferv1.JobKind_JOB_KIND_RESTORE && ev.GetTarget().GetDatabase() != "" {
		ref = ev.GetTarget()
	}
	c := Change{
		Rule: JobFailed, Instance: ref.GetInstance(), Database: ref.GetDatabase(), Kind: ev.GetKind(), Open: true,
		Notice:  ref.GetInstance() == "" || !resolvable[ev.GetKind()],
		Summary: fmt.Sprintf("%s job failed for %s", kindName(ev.GetKind()), subject(ref.GetInstance(), ref.GetDatabase())),
		Detail:  fmt.Sprintf("%s (service %s, job %s)", ev.GetReason(), ev.GetService(), ev.GetMeta().GetJobId()),
		At:      timeOf(ev.GetMeta()), By: ev.GetMeta().GetEventId(),
	}
	if ref.GetInstance() == "" {
		c.Summary = fmt.Sprintf("%s could not do its work", ev.GetService())
		if ev.GetKind() != cofferv1.JobKind_JOB_KIND_UNSPECIFIED {
			c.Summary = fmt.Sprintf("%s job failed in %s", kindName(ev.GetKind()), ev.GetService())
		}
	}
	return []Change{c}
}

// resolved is the change that clears rule's alert on a database.
func resolved(rule Rule, kind cofferv1.JobKind, ref *cofferv1.DatabaseRef, meta *cofferv1.EventMeta) Change {
	return Change{Rule: rule, Instance: ref.GetInstance(), Database: ref.GetDatabase(), Kind: kind,
		At: timeOf(meta), By: meta.GetEventId()}
}

// OnCommitted resolves a failed backup of the database and, for a full
// that is not copy-only, a chain break.
func OnCommitted(ev *cofferv1.RecoveryPointCommitted) []Change {
	rp := ev.GetRecoveryPoint()
	out := []Change{resolved(JobFailed, cofferv1.JobKind_JOB_KIND_BACKUP, rp.GetDatabase(), ev.GetMeta())}
	if b := rp.GetBackup(); b.GetType() == cofferv1.BackupType_BACKUP_TYPE_FULL && !b.GetCopyOnly() {
		out = append(out, resolved(ChainBreak, 0, rp.GetDatabase(), ev.GetMeta()))
	}
	return out
}

// OnChainBroken opens a chain_break alert for the database.
func OnChainBroken(ev *cofferv1.ChainBroken) []Change {
	ref := ev.GetDatabase()
	return []Change{{
		Rule: ChainBreak, Instance: ref.GetInstance(), Database: ref.GetDatabase(), Open: true,
		Summary: "log chain broken for " + subject(ref.GetInstance(), ref.GetDatabase()),
		Detail:  ev.GetReason(), At: timeOf(ev.GetMeta()), By: ev.GetMeta().GetEventId(),
	}}
}

// OnVerified opens a verify_failed alert when a result failed, and
// otherwise resolves it and a failed verify job.
func OnVerified(ev *cofferv1.VerifyCompleted) []Change {
	ref := ev.GetDatabase()
	var failed []string
	for _, r := range ev.GetResults() {
		if !r.GetPassed() {
			failed = append(failed, fmt.Sprintf("%s (%s): %s", r.GetRecoveryPoint(), r.GetLabel(), r.GetDetail()))
		}
	}
	if len(failed) == 0 {
		return []Change{
			resolved(VerifyFailed, 0, ref, ev.GetMeta()),
			resolved(JobFailed, cofferv1.JobKind_JOB_KIND_VERIFY, ref, ev.GetMeta()),
		}
	}
	return []Change{{
		Rule: VerifyFailed, Instance: ref.GetInstance(), Database: ref.GetDatabase(), Open: true,
		Summary: "test restore failed for " + subject(ref.GetInstance(), ref.GetDatabase()),
		Detail:  strings.Join(failed, "; "), At: timeOf(ev.GetMeta()), By: ev.GetMeta().GetEventId(),
	}}
}

// OnProtected resolves a failed protection of the database.
func OnProtected(ev *cofferv1.ProtectionConfigured) []Change {
	return []Change{resolved(JobFailed, cofferv1.JobKind_JOB_KIND_PROTECT, ev.GetItem().GetDatabase(), ev.GetMeta())}
}

// OnRestored resolves a failed restore onto the target.
func OnRestored(ev *cofferv1.RestoreCompleted) []Change {
	return []Change{resolved(JobFailed, cofferv1.JobKind_JOB_KIND_RESTORE, ev.GetTarget(), ev.GetMeta())}
}

// OnHealth opens an instance_unhealthy alert for an unreachable instance;
// a healthy one resolves it and a failed discovery of the instance.
func OnHealth(ev *cofferv1.InstanceHealthChanged) []Change {
	in := ev.GetInstance()
	if in.GetName() == "" {
		return nil
	}
	ref := &cofferv1.DatabaseRef{Instance: in.GetName()}
	if in.GetHealthy() {
		return []Change{
			resolved(InstanceUnhealthy, 0, ref, ev.GetMeta()),
			resolved(JobFailed, cofferv1.JobKind_JOB_KIND_DISCOVER, ref, ev.GetMeta()),
		}
	}
	detail := in.GetReason()
	if in.GetFix() != "" {
		detail += " — fix: " + in.GetFix()
	}
	return []Change{{
		Rule: InstanceUnhealthy, Instance: in.GetName(), Open: true,
		Summary: subject(in.GetName(), "") + " is unhealthy",
		Detail:  detail, At: timeOf(ev.GetMeta()), By: ev.GetMeta().GetEventId(),
	}}
}

// maxDamageLines bounds the problems and the recovery points a
// vault_check_failed alert lists: a vault missing a pack has thousands of
// damaged chunks, and the whole list is in the check's own output.
const maxDamageLines = 10

// OnVaultChecked opens the vault_check_failed alert of the vault when a
// `coffer vault check` found damage or could not finish, and resolves it
// when one passed.
func OnVaultChecked(ev *cofferv1.VaultChecked) []Change {
	c := Change{Rule: VaultCheckFailed, Vault: ev.GetVault(), At: timeOf(ev.GetMeta()), By: ev.GetMeta().GetEventId()}
	if ev.GetPassed() {
		return []Change{c}
	}
	c.Open = true
	if ev.GetError() != "" {
		c.Summary = fmt.Sprintf("vault check of %s could not finish", ev.GetVault())
		c.Detail = fmt.Sprintf("%s check: %s", ev.GetMode(), ev.GetError())
		return []Change{c}
	}
	c.Summary = fmt.Sprintf("vault check found damage in %s: %d recovery points cannot be restored", ev.GetVault(), len(ev.GetAffected()))
	c.Detail = fmt.Sprintf("%s check of %d recovery points, %d chunks: %s; recovery points that cannot be restored: %s",
		ev.GetMode(), ev.GetRecoveryPoints(), ev.GetChunks(), firstOf(ev.GetDamage(), "; "), firstOf(ev.GetAffected(), ", "))
	return []Change{c}
}

// firstOf joins the first maxDamageLines of list with sep, and says how
// many it leaves out.
func firstOf(list []string, sep string) string {
	if len(list) <= maxDamageLines {
		return strings.Join(list, sep)
	}
	return fmt.Sprintf("%s%sand %d more", strings.Join(list[:maxDamageLines], sep), sep, len(list)-maxDamageLines)
}

// enabled reports whether settings turn rule on: a rule the settings do
// not name is on.
func enabled(s *cofferv1.AlertSettings, rule Rule) bool {
	i := slices.IndexFunc(s.GetRules(), func(r *cofferv1.AlertRule) bool { return r.GetName() == string(rule) })
	return i < 0 || s.GetRules()[i].GetEnabled()
}

// DefaultSettings are the settings the alerter writes when there are
// none: every rule on, no channel (the flags name the channels).
func DefaultSettings() *cofferv1.AlertSettings {
	s := &cofferv1.AlertSettings{}
	for _, r := range Rules {
		s.Rules = append(s.Rules, &cofferv1.AlertRule{Name: string(r), Enabled: true})
	}
	return s
}
