package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// partitions is how many parts the fleet is split into for scheduler
// replicas to share (leases.go). Every replica must agree on it, so it is
// a constant, not a setting. A database's partition follows its instance:
// one replica holds all of an instance's databases, and keeps the limit of
// backups at once per instance exact without asking the others.
const partitions = 32

// partitionOf is the partition of the databases of instance.
func partitionOf(instance string) int {
	h := fnv.New32a()
	h.Write([]byte(instance))
	return int(h.Sum32() % partitions)
}

// fleet is the scheduler's copy of the catalog it schedules from: every
// database's schedule, protection and inventory record, and the policies.
// Watches keep it current, so a tick reads nothing it has not been told
// changed. For each partition it keeps a queue of databases by the time
// the tick must look at them next: when a backup falls due, or at once
// when something the schedule depends on changed (its protection, its
// inventory record, its policy), and once when the fleet is first read
// (or read again after a watch ended), for whatever changed while no one
// watched. A tick takes only what is due; a database whose protection,
// inventory record or policy rules out any backup is parked until one of
// them changes.
type fleet struct {
	logger *slog.Logger
	// the watched buckets, in the order catchUp reads them
	buckets []*catalog.Bucket
	apply   map[string]func(u catalog.Update) error // by bucket name

	mu        sync.Mutex
	schedules map[string]listedSchedule // by database key
	items     map[string]*cofferv1.ProtectedItem
	dbs       map[string]*cofferv1.DatabaseInfo
	policies  map[string]storedPolicy // by policy key
	// groups holds the registered replicas of each availability group
	// database, by groupKey of its id, then by database key
	groups map[string]map[string]replicaRef
	// pending counts the jobs the schedules record as queued or running,
	// by instance
	pending map[string]int
	queues  [partitions]dueQueue
	// inflight holds the databases a tick took and has not put back; true
	// once a change touched one meanwhile
	inflight map[string]bool
	applied  map[string]uint64 // revision applied, by bucket name
	synced   map[string]bool   // by bucket name
	// changed is closed, and replaced, whenever a change is applied
	changed chan struct{}
}

// newFleet returns an empty fleet following the given buckets.
func newFleet(logger *slog.Logger, schedule, protected, inventory, policies *catalog.Bucket) *fleet {
	f := &fleet{
		logger:    logger,
		buckets:   []*catalog.Bucket{policies, inventory, protected, schedule},
		schedules: map[string]listedSchedule{},
		items:     map[string]*cofferv1.ProtectedItem{},
		dbs:       map[string]*cofferv1.DatabaseInfo{},
		policies:  map[string]storedPolicy{},
		groups:    map[string]map[string]replicaRef{},
		pending:   map[string]int{},
		inflight:  map[string]bool{},
		applied:   map[string]uint64{},
		synced:    map[string]bool{},
		changed:   make(chan struct{}),
	}
	f.apply = map[string]func(catalog.Update) error{
		schedule.Name():  f.applySchedule,
		protected.Name(): f.applyProtected,
		inventory.Name(): f.applyInventory,
		policies.Name():  f.applyPolicy,
	}
	for i := range f.queues {
		f.queues[i].byKey = map[string]*dueItem{}
	}
	return f
}

// follow keeps the fleet current with b until ctx ends, watching again
// after a watch that ends early (a lost connection): the values it
// delivers again replace the fleet's, and keys gone meanwhile are
// dropped.
func (f *fleet) follow(ctx context.Context, b *catalog.Bucket) {
	for ctx.Err() == nil {
		err := f.watch(ctx, b)
		if ctx.Err() != nil {
			break
		}
		f.logger.WarnContext(ctx, "catalog watch ended; watching again", "bucket", b.Name(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// watch applies b's current values and then its changes, until ctx ends
// or the watch does.
func (f *fleet) watch(ctx context.Context, b *catalog.Bucket) error {
	name := b.Name()
	start, err := b.LastRevision(ctx)
	if err != nil {
		return err
	}
	updates, err := b.Watch(ctx, "")
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.synced[name] = false // until this watch has delivered the current values
	f.mu.Unlock()
	seen := map[string]bool{} // the keys of the current values, until synced
	for u := range updates {
		f.mu.Lock()
		switch {
		case u.Synced:
			f.dropUnseen(name, seen)
			seen = nil
			f.synced[name] = true
			f.applied[name] = max(f.applied[name], start)
		default:
			if seen != nil {
				seen[u.Key] = true
			}
			if err := f.apply[name](u); err != nil {
				// a record no tick could use: the database stays as it was
				f.logger.ErrorContext(ctx, "catalog record ignored", "bucket", name, "key", u.Key, "err", err)
			}
			f.applied[name] = max(f.applied[name], u.Revision)
		}
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}
	return errors.New("the watch ended")
}

// dropUnseen forgets the keys of bucket that a new watch did not deliver
// as current values: they were deleted while no watch ran.
func (f *fleet) dropUnseen(bucket string, seen map[string]bool) {
	var keys []string
	switch bucket {
	case f.buckets[3].Name():
		for k := range f.schedules {
			keys = append(keys, k)
		}
	case f.buckets[2].Name():
		for k := range f.items {
			keys = append(keys, k)
		}
	case f.buckets[1].Name():
		for k := range f.dbs {
			keys = append(keys, k)
		}
	case f.buckets[0].Name():
		for k := range f.policies {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if !seen[k] {
			f.apply[bucket](catalog.Update{Key: k, Deleted: true}) //nolint:errcheck // a delete decodes nothing
		}
	}
}

// catchUp waits until the fleet holds every change made to the catalog
// before it was called, so that a tick sees what the handlers and other
// services wrote before it.
func (f *fleet) catchUp(ctx context.Context) error {
	for _, b := range f.buckets {
		rev, err := b.LastRevision(ctx)
		if err != nil {
			return err
		}
		for {
			f.mu.Lock()
			ok := f.synced[b.Name()] && f.applied[b.Name()] >= rev
			changed := f.changed
			f.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return fmt.Errorf("catch up with %s: %w", b.Name(), ctx.Err())
			}
		}
	}
	return nil
}

// applySchedule applies a change of a database's schedule: the database
// is looked at next when its next backup falls due.
func (f *fleet) applySchedule(u catalog.Update) error {
	old, had := f.schedules[u.Key]
	if had {
		f.countPending(old.st, -1)
	}
	if u.Deleted {
		delete(f.schedules, u.Key)
		if had {
			f.queueOf(old.st).remove(u.Key)
		}
		return nil
	}
	st := &cofferv1.ScheduleState{}
	if err := u.Decode(st); err != nil {
		if had {
			f.countPending(old.st, 1)
		}
		return err
	}
	f.schedules[u.Key] = listedSchedule{st: st, rev: u.Revision}
	f.countPending(st, 1)
	// a schedule read when the watch starts is looked at by the next
	// tick: whatever changed while no watch ran
	f.touch(u.Key, !f.synced[f.buckets[3].Name()])
	return nil
}

func (f *fleet) countPending(st *cofferv1.ScheduleState, sign int) {
	inst := st.GetDatabase().GetInstance()
	f.pending[inst] += sign * len(pendingJobs(st))
	if f.pending[inst] == 0 {
		delete(f.pending, inst)
	}
}

// applyProtected applies a change of a protection.
func (f *fleet) applyProtected(u catalog.Update) error {
	if u.Deleted {
		delete(f.items, u.Key)
	} else {
		item := &cofferv1.ProtectedItem{}
		if err := u.Decode(item); err != nil {
			return err
		}
		// ticks use its state, policy and vault, RPOLag when it was
		// protected
		item = &cofferv1.ProtectedItem{State: item.GetState(), Policy: item.GetPolicy(), ProtectedAt: item.GetProtectedAt(), Vault: item.GetVault()}
		if proto.Equal(item, f.items[u.Key]) {
			return nil
		}
		f.items[u.Key] = item
	}
	f.touch(u.Key, true)
	return nil
}

// applyInventory applies a change of a database's inventory record.
// Discovery writes records again that did not change; those change
// nothing here.
func (f *fleet) applyInventory(u catalog.Update) error {
	old := f.dbs[u.Key]
	var db *cofferv1.DatabaseInfo
	if !u.Deleted {
		db = &cofferv1.DatabaseInfo{}
		if err := u.Decode(db); err != nil {
			return err
		}
		db = forScheduling(db)
		if proto.Equal(db, old) {
			return nil
		}
	}
	if r, ok := asReplica(u.Key, old); ok {
		g := groupKey(r.info.GetGroupDatabaseId())
		delete(f.groups[g], u.Key)
		if len(f.groups[g]) == 0 {
			delete(f.groups, g)
		}
	}
	if db == nil {
		delete(f.dbs, u.Key)
	} else {
		f.dbs[u.Key] = db
		if r, ok := asReplica(u.Key, db); ok {
			g := groupKey(db.GetGroupDatabaseId())
			if f.groups[g] == nil {
				f.groups[g] = map[string]replicaRef{}
			}
			f.groups[g][u.Key] = r
		}
	}
	f.touch(u.Key, true)
	return nil
}

// forScheduling keeps of d what ticks use: its name, state, recovery
// model, whether it is read-only or a snapshot, and its availability
// group. The rest (files, LSNs that move with every backup) would cost
// memory at fleet scale, and make each poll of discovery look like a
// change.
func forScheduling(d *cofferv1.DatabaseInfo) *cofferv1.DatabaseInfo {
	return &cofferv1.DatabaseInfo{
		Name: d.GetName(), State: d.GetState(), RecoveryModel: d.GetRecoveryModel(), ReadOnly: d.GetReadOnly(),
		Snapshot: d.GetSnapshot(), GroupDatabaseId: d.GetGroupDatabaseId(), ReplicaId: d.GetReplicaId(),
		AvailabilityGroup: d.GetAvailabilityGroup(), BackupPreference: d.GetBackupPreference(),
		PrimaryReplica: d.GetPrimaryReplica(), SynchronizationState: d.GetSynchronizationState(),
		PreferredBackupReplica: d.GetPreferredBackupReplica(), BasicAvailabilityGroup: d.GetBasicAvailabilityGroup(),
	}
}

// applyPolicy applies a change of a policy: every database under it is
// looked at by the next tick.
func (f *fleet) applyPolicy(u catalog.Update) error {
	sp := storedPolicy{}
	if !u.Deleted {
		var rec cofferv1.PolicyRecord
		if err := u.Decode(&rec); err != nil {
			return err
		}
		sp.p, sp.err = decodePolicy(rec.GetName(), &rec)
		f.policies[u.Key] = sp
	} else {
		delete(f.policies, u.Key)
	}
	for key, item := range f.items {
		name := item.GetPolicy()
		if name == "" {
			name = policy.DefaultName
		}
		if catalog.Key(name) == u.Key {
			f.touch(key, true)
		}
	}
	return nil
}

// touch puts the database under key back in its queue after a change:
// at once when now is set, else when its schedule next falls due.
func (f *fleet) touch(key string, now bool) {
	ls, ok := f.schedules[key]
	if !ok {
		return // no schedule: nothing to queue
	}
	if _, taken := f.inflight[key]; taken {
		f.inflight[key] = f.inflight[key] || now
		return // the tick that took it puts it back
	}
	f.requeue(key, ls.st, now)
}

// requeue queues key, whose schedule is st.
func (f *fleet) requeue(key string, st *cofferv1.ScheduleState, now bool) {
	q := f.queueOf(st)
	if now {
		q.set(key, time.Time{})
		return
	}
	if at, ok := nextDue(st); ok {
		q.set(key, at)
		return
	}
	q.remove(key)
}

func (f *fleet) queueOf(st *cofferv1.ScheduleState) *dueQueue {
	return &f.queues[partitionOf(st.GetDatabase().GetInstance())]
}

// nextDue is the earliest time anything in st falls due.
func nextDue(st *cofferv1.ScheduleState) (at time.Time, ok bool) {
	for _, t := range []time.Time{timeOf(st.GetNextFull()), timeOf(st.GetNextDifferential()), timeOf(st.GetNextLog()), timeOf(st.GetNextVerify())} {
		if !t.IsZero() && (!ok || t.Before(at)) {
			at, ok = t, true
		}
	}
	return at, ok
}

// take removes from the queues of the partitions in owned every database
// due at now, and marks each taken until put hands it back.
func (f *fleet) take(owned []int, now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for _, p := range owned {
		keys = f.queues[p].popDue(now, keys)
	}
	for _, k := range keys {
		f.inflight[k] = false
	}
	return keys
}

// put hands back a database the tick took: parked (out of every queue)
// when the tick found its protection, inventory or policy rules out any
// backup and nothing changed meanwhile, else queued again by its schedule
// as it now stands.
func (f *fleet) put(key string, parked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	touched := f.inflight[key]
	delete(f.inflight, key)
	ls, ok := f.schedules[key]
	if !ok {
		return
	}
	if parked && !touched {
		f.queueOf(ls.st).remove(key)
		return
	}
	f.requeue(key, ls.st, touched)
}

// lookup returns what a tick needs of the database under key: its
// schedule as last seen, its protection and its inventory record (nil
// when missing). The values are never changed in place.
func (f *fleet) lookup(key string) (ls listedSchedule, item *cofferv1.ProtectedItem, db *cofferv1.DatabaseInfo, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ls, ok = f.schedules[key]
	return ls, f.items[key], f.dbs[key], ok
}

// each calls fn, under the fleet's lock, with every database that has a
// schedule and a protection.
func (f *fleet) each(fn func(key string, st *cofferv1.ScheduleState, item *cofferv1.ProtectedItem)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, ls := range f.schedules {
		if item, ok := f.items[key]; ok {
			fn(key, ls.st, item)
		}
	}
}

// policy is lookupPolicy on the fleet.
func (f *fleet) policy(name string) (*policy.Policy, bool, error) {
	if name == "" {
		name = policy.DefaultName
	}
	f.mu.Lock()
	sp, ok := f.policies[catalog.Key(name)]
	f.mu.Unlock()
	if !ok {
		p, ok := unstoredPolicy(name)
		return p, ok, nil
	}
	if sp.err != nil {
		return nil, false, sp.err
	}
	return sp.p, true, nil
}

// route is Service.route on the fleet, for ref, whose inventory record is
// db.
func (f *fleet) route(ref *cofferv1.DatabaseRef, db *cofferv1.DatabaseInfo, typ cofferv1.BackupType) (instance, refusal string) {
	if db.GetGroupDatabaseId() == "" {
		return ref.GetInstance(), ""
	}
	f.mu.Lock()
	var reps []replicaRef
	for _, r := range f.groups[groupKey(db.GetGroupDatabaseId())] {
		reps = append(reps, r)
	}
	f.mu.Unlock()
	sortReplicas(reps)
	return routeAmong(ref, typ, db, reps)
}

// slots returns the slots of each instance for a tick: limit, less the
// backups the schedules record as queued or running.
func (f *fleet) slots(limit int) *instanceSlots {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &instanceSlots{limit: limit, used: make(map[string]int, len(f.pending))}
	for inst, n := range f.pending {
		s.used[inst] = n
	}
	return s
}

// dueQueue is a partition's databases by the time a tick must look at
// them next: a heap, with each database's place kept so that a change
// moves it.
type dueQueue struct {
	items dueHeap
	byKey map[string]*dueItem
}

type dueItem struct {
	key   string
	at    time.Time
	index int
}

// set queues key at at, moving it if it is queued already.
func (q *dueQueue) set(key string, at time.Time) {
	if it, ok := q.byKey[key]; ok {
		it.at = at
		heap.Fix(&q.items, it.index)
		return
	}
	it := &dueItem{key: key, at: at}
	q.byKey[key] = it
	heap.Push(&q.items, it)
}

// remove takes key out of the queue, if it is there.
func (q *dueQueue) remove(key string) {
	if it, ok := q.byKey[key]; ok {
		heap.Remove(&q.items, it.index)
		delete(q.byKey, key)
	}
}

// popDue removes every key due at now, appending it to out.
func (q *dueQueue) popDue(now time.Time, out []string) []string {
	for len(q.items) > 0 && !q.items[0].at.After(now) {
		it := heap.Pop(&q.items).(*dueItem)
		delete(q.byKey, it.key)
		out = append(out, it.key)
	}
	return out
}

// dueHeap implements heap.Interface, earliest first.
type dueHeap []*dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	it := x.(*dueItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
