package mssqlsim

// Open transactions. The simulator commits each transaction's changes at
// once, but a transaction can be open across a backup (BEGIN TRAN in a
// session, or Instance.BeginTransaction): its begin record holds the log,
// so a full backup that starts while it is open reaches back to it
// (FirstLSN before CheckpointLSN), and the differential base the full
// sets lies after the checkpoint, where its data copy began. That is how
// FirstLSN, CheckpointLSN and the differential base come to differ on SQL
// Server, and why a differential is linked to its base by GUID.

// beginTx writes a begin record and returns the transaction's id.
func (d *dbData) beginTx() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.openTx == nil {
		d.openTx = map[int64]LSN{}
	}
	d.txSeq++
	d.openTx[d.txSeq] = d.lsn.take()
	return d.txSeq
}

// endTx ends an open transaction (commit or rollback).
func (d *dbData) endTx(id int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.openTx, id)
}

// oldestOpenTx returns the begin LSN of the oldest open transaction.
// d.mu must be held.
func (d *dbData) oldestOpenTx() (LSN, bool) {
	var oldest LSN
	for _, l := range d.openTx {
		if oldest == 0 || l < oldest {
			oldest = l
		}
	}
	return oldest, oldest != 0
}

// BeginTransaction opens a transaction in database name, as BEGIN TRAN in
// a session does; end commits or rolls it back (it changes no page).
func (i *Instance) BeginTransaction(name string) (end func(), err error) {
	db, e := i.lookup(name)
	if e != nil {
		return nil, e
	}
	id := db.beginTx()
	return func() { db.endTx(id) }, nil
}

// openTx is a session's open transaction in a user database.
type openTx struct {
	data *dbData
	id   int64
}

// end ends the session's open transaction, if any.
func (s *session) endTx() {
	if s.tx != nil {
		s.tx.data.endTx(s.tx.id)
		s.tx = nil
	}
}

// lastFullCheckpoint is the checkpoint LSN of the last full that is the
// differential base (DatabaseBackupLSN). d.mu must be held.
func (d *dbData) lastFullCheckpoint() LSN {
	if d.fullCkpt != 0 && d.diffBaseLSN != 0 {
		return d.fullCkpt
	}
	return d.diffBaseLSN
}
