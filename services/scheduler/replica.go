package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// replicaRef is one registered replica of an availability group database.
type replicaRef struct {
	instance string
	info     *cofferv1.DatabaseInfo
}

// replicas lists the registered replicas of the availability group
// database db, by instance name. Each record is what discovery last read
// on that replica.
func (s *Service) replicas(ctx context.Context, db *cofferv1.DatabaseInfo) ([]replicaRef, error) {
	var out []replicaRef
	err := s.inventory.List(ctx, "", func() proto.Message { return &cofferv1.DatabaseInfo{} }, func(key string, m proto.Message) error {
		d := m.(*cofferv1.DatabaseInfo)
		if !strings.EqualFold(d.GetGroupDatabaseId(), db.GetGroupDatabaseId()) {
			return nil
		}
		if r, ok := asReplica(key, d); ok {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the replicas of %q: %w", db.GetName(), err)
	}
	sortReplicas(out)
	return out, nil
}

// asReplica returns the inventory record d, stored under key, as a replica
// of its availability group; ok is false outside a group.
func asReplica(key string, d *cofferv1.DatabaseInfo) (r replicaRef, ok bool) {
	if d.GetGroupDatabaseId() == "" {
		return replicaRef{}, false
	}
	parts, err := catalog.SplitKey(key)
	if err != nil || len(parts) != 2 {
		return replicaRef{}, false
	}
	return replicaRef{instance: parts[0], info: d}, true
}

// sortReplicas orders replicas by instance name.
func sortReplicas(reps []replicaRef) {
	slices.SortFunc(reps, func(a, b replicaRef) int { return strings.Compare(a.instance, b.instance) })
}

// route decides which registered instance runs a backup of ref
// (REFERENCE.md, availability groups): outside a group, ref's own
// instance; in a group, full and differential backups run on the primary,
// and log and copy-only backups on the replica that
// sys.fn_hadr_backup_is_preferred_replica names. When the replica the
// preference names is not registered with coffer, logs fall back to the
// primary unless the preference is SECONDARY_ONLY. refusal explains a
// backup no registered replica may take.
func (s *Service) route(ctx context.Context, ref *cofferv1.DatabaseRef, typ cofferv1.BackupType) (instance, refusal string, err error) {
	var db cofferv1.DatabaseInfo
	if _, err := s.inventory.Get(ctx, catalog.Key(ref.GetInstance(), ref.GetDatabase()), &db); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return ref.GetInstance(), "", nil // not discovered (yet): the streamer says what is wrong
		}
		return "", "", err
	}
	if db.GetGroupDatabaseId() == "" {
		return ref.GetInstance(), "", nil
	}
	reps, err := s.replicas(ctx, &db)
	if err != nil {
		return "", "", err
	}
	instance, refusal = routeAmong(ref, typ, &db, reps)
	return instance, refusal, nil
}

// routeAmong is route's decision for the availability group database db,
// inventoried as ref, given the registered replicas of its group.
func routeAmong(ref *cofferv1.DatabaseRef, typ cofferv1.BackupType, db *cofferv1.DatabaseInfo, reps []replicaRef) (instance, refusal string) {
	var primary, preferred string
	for _, r := range reps {
		// during a failover two records may both say primary until
		// discovery reads both again; the protected instance wins, and
		// SQL Server refuses (3059) a full on a replica that is not
		if r.info.GetPrimaryReplica() && (primary == "" || r.instance == ref.GetInstance()) {
			primary = r.instance
		}
		if r.info.GetPreferredBackupReplica() && preferred == "" {
			preferred = r.instance
		}
	}
	group := db.GetAvailabilityGroup()
	switch typ {
	case cofferv1.BackupType_BACKUP_TYPE_FULL, cofferv1.BackupType_BACKUP_TYPE_DIFFERENTIAL:
		if primary == "" {
			return "", fmt.Sprintf("no registered instance is the primary replica of availability group %q: full and differential backups run only on the primary; register it (coffer instance add)", group)
		}
		return primary, ""
	}
	switch {
	case db.GetBasicAvailabilityGroup():
		// a basic group (Standard edition) backs up nothing on its
		// secondary, whatever its preference says
		if primary == "" {
			return "", fmt.Sprintf("availability group %q is a basic availability group, which takes backups on the primary replica only, and no registered instance is its primary; register it (coffer instance add)", group)
		}
		return primary, ""
	case preferred != "":
		return preferred, ""
	case db.GetBackupPreference() == "SECONDARY_ONLY":
		return "", fmt.Sprintf("availability group %q takes backups on secondary replicas only, and no registered secondary is synchronized and preferred now (coffer db list shows each replica's state)", group)
	case primary != "":
		return primary, ""
	}
	return "", fmt.Sprintf("no registered replica of availability group %q may take a log backup now", group)
}

// protectedReplica returns another replica of db's availability group
// that is already protected: a group database is protected once and
// backed up where the group's preference says.
func (s *Service) protectedReplica(ctx context.Context, ref *cofferv1.DatabaseRef, db *cofferv1.DatabaseInfo) (*cofferv1.ProtectedItem, error) {
	if db.GetGroupDatabaseId() == "" {
		return nil, nil
	}
	reps, err := s.replicas(ctx, db)
	if err != nil {
		return nil, err
	}
	for _, r := range reps {
		if r.instance == ref.GetInstance() {
			continue
		}
		var item cofferv1.ProtectedItem
		if _, err := s.protected.Get(ctx, catalog.Key(r.instance, r.info.GetName()), &item); err != nil {
			if errors.Is(err, catalog.ErrNotFound) {
				continue
			}
			return nil, err
		}
		if item.GetState() == cofferv1.ProtectionState_PROTECTION_STATE_PROTECTED {
			return &item, nil
		}
	}
	return nil, nil
}
