package scheduler

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/policy"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// listedSchedule is a database's schedule as the fleet last saw it, at
// revision rev: a tick's update of it starts from there.
type listedSchedule struct {
	st  *cofferv1.ScheduleState
	rev uint64
}

// storedPolicy is a stored policy record, decoded once per change.
type storedPolicy struct {
	p   *policy.Policy
	err error // the record is malformed
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

// instanceSlots counts the backups queued or running on each instance
// while a tick's workers queue more. A database takes a slot before it
// queues a backup, so no instance goes past the limit whatever order the
// workers run in.
type instanceSlots struct {
	limit int
	mu    sync.Mutex
	used  map[string]int // by instance
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
