package mssqlsim

import (
	"fmt"
	"sort"
	"sync"
)

// Backup preferences of an availability group
// (automated_backup_preference_desc).
const (
	PreferPrimary       = "PRIMARY"
	PreferSecondaryOnly = "SECONDARY_ONLY"
	PreferSecondary     = "SECONDARY"
	PreferNone          = "NONE"
)

// Synchronization states of a secondary replica's database.
const (
	Synchronized     = "SYNCHRONIZED"
	Synchronizing    = "SYNCHRONIZING"
	NotSynchronizing = "NOT SYNCHRONIZING"
)

type agReplica struct {
	inst     *Instance
	id       GUID
	priority int
	primary  bool
	sync     string
}

// AvailabilityGroup joins databases of several instances. Its databases
// share one log: LSNs and the log chain continue across replicas.
type AvailabilityGroup struct {
	mu         sync.Mutex
	Name       string
	id         GUID
	preference string
	replicas   []*agReplica
	dbIDs      map[string]GUID // group_database_id by database name
	// basic is a basic availability group (Standard edition): two
	// replicas, one database, and no backups on the secondary.
	basic bool
}

// NewBasicAvailabilityGroup forms a basic availability group, as Standard
// edition has: one primary, one secondary, one database. SQL Server takes
// no backup of any kind on its secondary, whatever the backup preference
// (the simulator refuses one with 3059, as on any secondary).
func NewBasicAvailabilityGroup(name, preference string, primary, secondary *Instance) (*AvailabilityGroup, error) {
	ag, err := NewAvailabilityGroup(name, preference, primary, secondary)
	if err != nil {
		return nil, err
	}
	ag.basic = true
	return ag, nil
}

// NewAvailabilityGroup forms a group with primary as the primary replica.
func NewAvailabilityGroup(name, preference string, primary *Instance, secondaries ...*Instance) (*AvailabilityGroup, error) {
	switch preference {
	case PreferPrimary, PreferSecondaryOnly, PreferSecondary, PreferNone:
	default:
		return nil, fmt.Errorf("unknown backup preference %q", preference)
	}
	ag := &AvailabilityGroup{Name: name, id: primary.guid(), preference: preference, dbIDs: map[string]GUID{}}
	for k, inst := range append([]*Instance{primary}, secondaries...) {
		ag.replicas = append(ag.replicas, &agReplica{inst: inst, id: inst.guid(), priority: 50, primary: k == 0, sync: Synchronized})
		inst.mu.Lock()
		inst.ags[name] = ag
		inst.mu.Unlock()
	}
	return ag, nil
}

func (ag *AvailabilityGroup) replica(inst *Instance) *agReplica {
	for _, r := range ag.replicas {
		if r.inst == inst {
			return r
		}
	}
	return nil
}

// AddDatabase joins a database of the primary to the group: each secondary
// gets a replica of it that shares its log. The database must use the FULL
// recovery model and have had a full backup, as SQL Server requires.
func (ag *AvailabilityGroup) AddDatabase(name string) error {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	var prim *agReplica
	for _, r := range ag.replicas {
		if r.primary {
			prim = r
		}
	}
	db, e := prim.inst.lookup(name)
	if e != nil {
		return e
	}
	if ag.basic && len(ag.dbIDs) > 0 {
		return newErr(41199, 16, "The specified command is invalid because the Always On Availability Groups basic availability group feature supports only one database per availability group.")
	}
	db.mu.Lock()
	ok := db.recovery == Full && db.diffBaseLSN != 0
	db.mu.Unlock()
	if !ok {
		return newErr(35250, 16, "Database '%s' cannot join the availability group: it must use the FULL recovery model and have a full backup.", name)
	}
	ag.dbIDs[db.Name] = prim.inst.guid()
	db.agName, db.ag, db.owner = ag.Name, ag, prim.inst
	for _, r := range ag.replicas {
		if r.primary {
			continue
		}
		r.inst.mu.Lock()
		if r.inst.dbByName(db.Name) != nil {
			r.inst.mu.Unlock()
			return fmt.Errorf("instance %s already has a database %q", r.inst.Name(), db.Name)
		}
		rep := &Database{ID: r.inst.nextDBID, Name: db.Name, State: Online, CreateDate: db.CreateDate,
			Collation: db.Collation, Files: db.Files, agName: ag.Name, ag: ag, owner: r.inst, dbData: db.dbData}
		r.inst.nextDBID++
		r.inst.dbs[rep.ID] = rep
		r.inst.mu.Unlock()
	}
	return nil
}

// Failover makes inst the primary replica.
func (ag *AvailabilityGroup) Failover(inst *Instance) error {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if ag.replica(inst) == nil {
		return fmt.Errorf("instance %s is not a replica of %s", inst.Name(), ag.Name)
	}
	for _, r := range ag.replicas {
		r.primary = r.inst == inst
	}
	return nil
}

// SetSynchronization sets a replica's synchronization state.
func (ag *AvailabilityGroup) SetSynchronization(inst *Instance, state string) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if r := ag.replica(inst); r != nil {
		r.sync = state
	}
}

// SetBackupPriority sets a replica's backup priority (0 to 100; 0 means
// never back up there).
func (ag *AvailabilityGroup) SetBackupPriority(inst *Instance, priority int) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if r := ag.replica(inst); r != nil {
		r.priority = priority
	}
}

// SetBackupPreference changes the group's automated backup preference.
func (ag *AvailabilityGroup) SetBackupPreference(p string) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.preference = p
}

// isPrimaryReplica reports whether db is the primary replica's copy.
func (db *Database) isPrimaryReplica() bool {
	if db.ag == nil {
		return true
	}
	db.ag.mu.Lock()
	defer db.ag.mu.Unlock()
	r := db.ag.replica(db.owner)
	return r != nil && r.primary
}

// secondaryCanBackup refuses a backup on a secondary that is not
// synchronizing.
func (db *Database) secondaryCanBackup() *Error {
	db.ag.mu.Lock()
	defer db.ag.mu.Unlock()
	r := db.ag.replica(db.owner)
	if db.ag.basic {
		return newErr(3059, 16, "This BACKUP or RESTORE command is not supported on a database mirror or secondary replica.")
	}
	if r == nil || r.sync == NotSynchronizing {
		return newErr(976, 14, "The target database, '%s', is participating in an availability group and is currently not accessible for queries.", db.Name)
	}
	return nil
}

// preferred answers sys.fn_hadr_backup_is_preferred_replica for the
// replica on inst.
func (ag *AvailabilityGroup) preferred(inst *Instance) bool {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	var prim *agReplica
	var secs []*agReplica
	for _, r := range ag.replicas {
		if r.primary {
			prim = r
		} else if r.sync != NotSynchronizing && r.priority > 0 {
			secs = append(secs, r)
		}
	}
	best := func(rs []*agReplica) *agReplica {
		sort.SliceStable(rs, func(a, b int) bool {
			if rs[a].priority != rs[b].priority {
				return rs[a].priority > rs[b].priority
			}
			return rs[a].inst.Name() < rs[b].inst.Name()
		})
		if len(rs) == 0 {
			return nil
		}
		return rs[0]
	}
	var pick *agReplica
	switch ag.preference {
	case PreferPrimary:
		pick = prim
	case PreferSecondaryOnly:
		pick = best(secs)
	case PreferSecondary:
		if pick = best(secs); pick == nil {
			pick = prim
		}
	default:
		all := secs
		if prim != nil && prim.priority > 0 {
			all = append(all, prim)
		}
		pick = best(all)
	}
	return pick != nil && pick.inst == inst
}
