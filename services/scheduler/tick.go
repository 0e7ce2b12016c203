package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// tickView is what a tick reads once for all databases, rather than a
// read per database: the schedules, and the protections, inventory and
// policies.
type tickView struct {
	schedules []listedSchedule
	protected map[string]*cofferv1.ProtectedItem // by database key
	inventory map[string]*cofferv1.DatabaseInfo  // by database key
	policies  map[string]storedPolicy            // by policy key
	// groups holds the registered replicas of each availability group
	// database, by groupKey of its id, sorted by instance
	groups map[string][]replicaRef
}

// listedSchedule is a database's schedule as a tick read it, at revision
// rev: the tick's update of it starts from there.
type listedSchedule struct {
	st  *cofferv1.ScheduleState
	rev uint64
}

// storedPolicy is a stored policy record, decoded once per tick.
type storedPolicy struct {
	p   *policy.Policy
	err error // the record is malformed
}

// readTick reads the buckets a tick works from, all at once.
func (s *Service) readTick(ctx context.Context) (*tickView, error) {
	v := &tickView{
		protected: map[string]*cofferv1.ProtectedItem{},
		inventory: map[string]*cofferv1.DatabaseInfo{},
		policies:  map[string]storedPolicy{},
		groups:    map[string][]replicaRef{},
	}
	records := map[string]*cofferv1.PolicyRecord{}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { v.schedules, errs[0] = s.listSchedules(ctx) })
	wg.Go(func() {
		errs[1] = listInto(ctx, s.protected, func() *cofferv1.ProtectedItem { return &cofferv1.ProtectedItem{} }, v.protected)
	})
	wg.Go(func() {
		errs[2] = listInto(ctx, s.inventory, func() *cofferv1.DatabaseInfo { return &cofferv1.DatabaseInfo{} }, v.inventory)
	})
	wg.Go(func() {
		errs[3] = listInto(ctx, s.policies, func() *cofferv1.PolicyRecord { return &cofferv1.PolicyRecord{} }, records)
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for key, rec := range records {
		p, err := decodePolicy(rec.GetName(), rec)
		v.policies[key] = storedPolicy{p: p, err: err}
	}
	for key, d := range v.inventory {
		if r, ok := asReplica(key, d); ok {
			g := groupKey(d.GetGroupDatabaseId())
			v.groups[g] = append(v.groups[g], r)
		}
	}
	for _, reps := range v.groups {
		sortReplicas(reps)
	}
	return v, nil
}

// listSchedules reads every schedule with its revision, which
// Bucket.List does not give.
func (s *Service) listSchedules(ctx context.Context) ([]listedSchedule, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watch
	updates, err := s.schedule.Watch(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []listedSchedule
	for u := range updates {
		if u.Synced {
			return out, nil
		}
		st := &cofferv1.ScheduleState{}
		if err := u.Decode(st); err != nil {
			return nil, fmt.Errorf("list %s: %w", s.schedule.Name(), err)
		}
		out = append(out, listedSchedule{st: st, rev: u.Revision})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", s.schedule.Name(), err)
	}
	return nil, fmt.Errorf("list %s: the watch ended early", s.schedule.Name())
}

// listInto reads every value of b into into, by key, each decoded into a
// message from newMsg.
func listInto[M proto.Message](ctx context.Context, b *catalog.Bucket, newMsg func() M, into map[string]M) error {
	return b.List(ctx, "", func() proto.Message { return newMsg() }, func(key string, m proto.Message) error {
		into[key] = m.(M)
		return nil
	})
}

// groupKey is an availability group database id as replicas compares
// them, without regard to case (the ids are GUIDs).
func groupKey(id string) string { return strings.ToLower(id) }

// policy is lookupPolicy on the view.
func (v *tickView) policy(name string) (*policy.Policy, bool, error) {
	if name == "" {
		name = policy.DefaultName
	}
	sp, ok := v.policies[catalog.Key(name)]
	if !ok {
		p, ok := unstoredPolicy(name)
		return p, ok, nil
	}
	if sp.err != nil {
		return nil, false, sp.err
	}
	return sp.p, true, nil
}

// route is Service.route on the view, for ref, whose inventory record is
// db.
func (v *tickView) route(ref *cofferv1.DatabaseRef, db *cofferv1.DatabaseInfo, typ cofferv1.BackupType) (instance, refusal string) {
	if db.GetGroupDatabaseId() == "" {
		return ref.GetInstance(), ""
	}
	return routeAmong(ref, typ, db, v.groups[groupKey(db.GetGroupDatabaseId())])
}

// instanceSlots counts the backups queued or running on each instance
// while a tick's workers queue more. A database takes a slot before it
// queues a backup, so no instance goes past the limit whatever order the
// workers run in.
type instanceSlots struct {
	limit int
	mu    sync.Mutex
	used  map[string]int // by instance
}

// newInstanceSlots counts the jobs the schedules record as pending.
func newInstanceSlots(limit int, schedules []listedSchedule) *instanceSlots {
	s := &instanceSlots{limit: limit, used: map[string]int{}}
	for _, ls := range schedules {
		s.used[ls.st.GetDatabase().GetInstance()] += len(pendingJobs(ls.st))
	}
	return s
}

// take takes a slot on instance, reporting whether one was free.
func (s *instanceSlots) take(instance string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[instance] >= s.limit {
		return false
	}
	s.used[instance]++
	return true
}

// give frees n slots taken on instance.
func (s *instanceSlots) give(instance string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[instance] -= n
}
