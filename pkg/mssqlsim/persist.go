package mssqlsim

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// The saved state of an instance: everything but availability groups,
// running workloads and faults, which a restart ends.

type savedInstance struct {
	Logins      map[string]savedLogin
	Credentials []savedCredential
	Databases   []savedDatabase
	NextDBID    int
	BackupSets  []backupSetRow
	MediaSets   int
}

type savedLogin struct {
	Password string
	Sysadmin bool
}

type savedCredential struct {
	ID                     int
	Name, Identity, Secret string
}

type savedDatabase struct {
	ID         int
	Name       string
	State      State
	ReadOnly   bool
	CreateDate time.Time
	Collation  string
	Files      []File

	Seed            uint64
	Versions        []uint32
	Overrides       map[uint32][]byte
	DCM, BCM        []bool
	NextLSN         LSN
	Recovery        RecoveryModel
	LastTime        time.Time
	OriginVersions  []uint32
	OriginOverrides map[uint32][]byte
	OriginTime      time.Time
	Records         []logRecord
	FamilyGUID      GUID
	DatabaseGUID    GUID
	ForkGUID        GUID
	ForkPointLSN    LSN
	DiffBaseLSN     LSN
	DiffBaseGUID    GUID
	DiffBaseTime    time.Time
	LastLogBackup   LSN
	LogChainStart   LSN
	Restore         *savedRestore
	Forks           []savedFork
	Tables          []tableOp // user tables; absent from state saved before tables existed
}

type savedRestore struct {
	Redo           LSN
	RedoTime       time.Time
	Fork, Family   GUID
	BaseCheckpoint LSN
	BaseGUID       GUID
	BaseCopyOnly   bool
	HaveData, Tail bool
	Recovery       RecoveryModel
}

type savedFork struct {
	GUID  GUID
	Until LSN
}

// Save writes the instance's state to path atomically (a temporary file
// renamed over it). Running backups are not waited for: save when idle.
func (i *Instance) Save(path string) error {
	s := savedInstance{Logins: map[string]savedLogin{}}
	i.mu.Lock()
	for name, l := range i.logins {
		s.Logins[name] = savedLogin{Password: l.password, Sysadmin: l.sysadmin}
	}
	for _, c := range i.credentials {
		s.Credentials = append(s.Credentials, savedCredential{ID: c.id, Name: c.name, Identity: c.identity, Secret: c.secret})
	}
	s.NextDBID, s.MediaSets = i.nextDBID, i.mediaSets
	for _, r := range i.backupsets {
		s.BackupSets = append(s.BackupSets, *r)
	}
	dbs := i.sortedDBs()
	i.mu.Unlock()
	// hold every database's lock until the state is encoded: the saved
	// slices are the live ones (replicas share one lock, taken once)
	locked := map[*dbData]bool{}
	for _, db := range dbs {
		if !locked[db.dbData] {
			db.mu.Lock()
			locked[db.dbData] = true
		}
	}
	defer func() {
		for d := range locked {
			d.mu.Unlock()
		}
	}()
	for _, db := range dbs {
		if db.ag != nil {
			continue // availability groups are not saved
		}
		sd := savedDatabase{
			ID: db.ID, Name: db.Name, State: db.State, ReadOnly: db.ReadOnly, CreateDate: db.CreateDate,
			Collation: db.Collation, Files: db.Files, Seed: db.seed, Versions: db.versions, Overrides: db.overrides,
			DCM: db.dcm, BCM: db.bcm, NextLSN: db.lsn.next, Recovery: db.recovery, LastTime: db.lastTime,
			OriginVersions: db.originVersions, OriginOverrides: db.originOverrides, OriginTime: db.originTime,
			Records: db.recs, FamilyGUID: db.familyGUID, DatabaseGUID: db.databaseGUID, ForkGUID: db.forkGUID,
			ForkPointLSN: db.forkPointLSN, DiffBaseLSN: db.diffBaseLSN, DiffBaseGUID: db.diffBaseGUID,
			DiffBaseTime: db.diffBaseTime, LastLogBackup: db.lastLogBackup, LogChainStart: db.logChainStart,
			Tables: db.snapshotTables(),
		}
		if r := db.restore; r != nil {
			sd.Restore = &savedRestore{Redo: r.redo, RedoTime: r.redoTime, Fork: r.fork, Family: r.family,
				BaseCheckpoint: r.baseCheckpoint, BaseGUID: r.baseGUID, BaseCopyOnly: r.baseCopyOnly, HaveData: r.haveData, Tail: r.tail, Recovery: r.recovery}
		}
		for _, f := range db.forks {
			sd.Forks = append(sd.Forks, savedFork{GUID: f.guid, Until: f.until})
		}
		s.Databases = append(s.Databases, sd)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("save instance state: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	err = gob.NewEncoder(w).Encode(&s)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save instance state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save instance state: %w", err)
	}
	return nil
}

// Load returns an instance with the state saved at path, configured by
// cfg. A missing file gives a new instance.
func Load(path string, cfg Config) (*Instance, error) {
	inst := New(cfg)
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return inst, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load instance state: %w", err)
	}
	defer f.Close()
	var s savedInstance
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&s); err != nil {
		return nil, fmt.Errorf("load instance state %s: %w", path, err)
	}
	for name, l := range s.Logins {
		if name == "sa" && cfg.SAPassword != "" {
			l.Password = cfg.SAPassword // the command line wins
		}
		inst.logins[name] = &login{password: l.Password, sysadmin: l.Sysadmin}
	}
	for _, c := range s.Credentials {
		inst.credentials = append(inst.credentials, &credential{id: c.ID, name: c.Name, identity: c.Identity, secret: c.Secret})
	}
	inst.nextDBID, inst.mediaSets = s.NextDBID, s.MediaSets
	for k := range s.BackupSets {
		inst.backupsets = append(inst.backupsets, &s.BackupSets[k])
	}
	inst.dbs = map[int]*Database{}
	for _, sd := range s.Databases {
		d := &dbData{
			seed: sd.Seed, versions: sd.Versions, overrides: nonNilMap(sd.Overrides), dcm: sd.DCM, bcm: sd.BCM,
			lsn: lsnGen{next: sd.NextLSN}, recovery: sd.Recovery, lastTime: sd.LastTime,
			originVersions: sd.OriginVersions, originOverrides: nonNilMap(sd.OriginOverrides), originTime: sd.OriginTime,
			recs: sd.Records, familyGUID: sd.FamilyGUID, databaseGUID: sd.DatabaseGUID, forkGUID: sd.ForkGUID,
			forkPointLSN: sd.ForkPointLSN, diffBaseLSN: sd.DiffBaseLSN, diffBaseGUID: sd.DiffBaseGUID,
			diffBaseTime: sd.DiffBaseTime, lastLogBackup: sd.LastLogBackup, logChainStart: sd.LogChainStart,
		}
		d.applyTables(sd.Tables)
		if r := sd.Restore; r != nil {
			d.restore = &restoreState{redo: r.Redo, redoTime: r.RedoTime, fork: r.Fork, family: r.Family,
				baseCheckpoint: r.BaseCheckpoint, baseGUID: r.BaseGUID, baseCopyOnly: r.BaseCopyOnly, haveData: r.HaveData, tail: r.Tail, recovery: r.Recovery}
		}
		for _, fk := range sd.Forks {
			d.forks = append(d.forks, forkEntry{guid: fk.GUID, until: fk.Until})
		}
		inst.dbs[sd.ID] = &Database{ID: sd.ID, Name: sd.Name, State: sd.State, ReadOnly: sd.ReadOnly,
			CreateDate: sd.CreateDate, Collation: sd.Collation, Files: sd.Files, owner: inst, dbData: d}
	}
	inst.rnd = &lockedRand{r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	return inst, nil
}

func nonNilMap(m map[uint32][]byte) map[uint32][]byte {
	if m == nil {
		return map[uint32][]byte{}
	}
	return m
}
