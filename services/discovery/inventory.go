package discovery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/event"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/telemetry"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// databaseInfo is the inventory record of what SQL Server listed.
func databaseInfo(d *mssql.Database) *cofferv1.DatabaseInfo {
	info := &cofferv1.DatabaseInfo{
		Name:                d.Name,
		DatabaseId:          d.ID,
		State:               d.State,
		RecoveryModel:       d.RecoveryModel,
		ReadOnly:            d.ReadOnly,
		UserAccess:          d.UserAccess,
		InStandby:           d.InStandby,
		Snapshot:            d.Snapshot,
		GroupDatabaseId:     d.GroupDatabaseID,
		ReplicaId:           d.ReplicaID,
		Encrypted:           d.Encrypted,
		CreateDate:          timestamppb.New(d.Created),
		Collation:           d.Collation,
		LastLogBackupLsn:    d.LastLogBackupLSN,
		DifferentialBaseLsn: d.DiffBaseLSN,
		SizeBytes:           d.Size(),
		RecoveryForkGuid:    d.RecoveryForkGUID,
	}
	if r := d.AG; r != nil {
		info.AvailabilityGroup, info.BackupPreference = r.Group, r.Preference
		info.PrimaryReplica, info.SynchronizationState, info.PreferredBackupReplica = r.Primary, r.Synchronization, r.Preferred
		info.BasicAvailabilityGroup = r.Basic
	}
	for _, f := range d.Files {
		info.Files = append(info.Files, &cofferv1.FileInfo{
			FileId: f.ID, LogicalName: f.Logical, PhysicalName: f.Physical, Type: f.Type, SizeBytes: f.Size,
		})
	}
	return info
}

// sameDatabase reports whether two records describe one database rather
// than one dropped and another created under its name.
func sameDatabase(a, b *cofferv1.DatabaseInfo) bool {
	return a.GetDatabaseId() == b.GetDatabaseId() && a.GetCreateDate().AsTime().Equal(b.GetCreateDate().AsTime())
}

// tracked is the part of a record whose change is an event: what backup
// decisions depend on. Sizes are left out (files grow all the time and no
// decision follows), and so are the name, id and creation date, which make
// the database's identity.
func tracked(d *cofferv1.DatabaseInfo) *cofferv1.DatabaseInfo {
	t := &cofferv1.DatabaseInfo{
		State:               d.GetState(),
		RecoveryModel:       d.GetRecoveryModel(),
		ReadOnly:            d.GetReadOnly(),
		UserAccess:          d.GetUserAccess(),
		InStandby:           d.GetInStandby(),
		GroupDatabaseId:     d.GetGroupDatabaseId(),
		ReplicaId:           d.GetReplicaId(),
		Encrypted:           d.GetEncrypted(),
		LastLogBackupLsn:    d.GetLastLogBackupLsn(),
		DifferentialBaseLsn: d.GetDifferentialBaseLsn(),
		RecoveryForkGuid:    d.GetRecoveryForkGuid(),
		// a failover or a new backup preference moves where backups run
		AvailabilityGroup:      d.GetAvailabilityGroup(),
		BackupPreference:       d.GetBackupPreference(),
		PrimaryReplica:         d.GetPrimaryReplica(),
		SynchronizationState:   d.GetSynchronizationState(),
		PreferredBackupReplica: d.GetPreferredBackupReplica(),
		BasicAvailabilityGroup: d.GetBasicAvailabilityGroup(),
	}
	for _, f := range d.GetFiles() {
		t.Files = append(t.Files, &cofferv1.FileInfo{
			FileId: f.GetFileId(), LogicalName: f.GetLogicalName(), PhysicalName: f.GetPhysicalName(), Type: f.GetType(),
		})
	}
	return t
}

// stateHash names a tracked state in an event id.
func stateHash(d *cofferv1.DatabaseInfo) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(tracked(d))
	if err != nil {
		// Marshalling a message built above cannot fail.
		panic(fmt.Sprintf("marshal database state: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func createStamp(d *cofferv1.DatabaseInfo) string {
	return d.GetCreateDate().AsTime().UTC().Format(time.RFC3339Nano)
}

// reconcile brings the instance's inventory in line with what SQL Server
// listed, publishing each difference before writing it, and returns how
// many databases the instance has.
func (s *Service) reconcile(ctx context.Context, instance string, dbs []mssql.Database) (int, error) {
	prev := map[string]*cofferv1.DatabaseInfo{}
	err := s.inventory.List(ctx, catalog.Key(instance), func() proto.Message { return &cofferv1.DatabaseInfo{} },
		func(_ string, m proto.Message) error {
			d := m.(*cofferv1.DatabaseInfo)
			prev[d.GetName()] = d
			return nil
		})
	if err != nil {
		return 0, fmt.Errorf("read inventory of %s: %w", instance, err)
	}
	byID := map[int32]*cofferv1.DatabaseInfo{}
	for _, d := range prev {
		byID[d.GetDatabaseId()] = d
	}
	now := s.cfg.Now()
	seen := map[string]bool{}
	for i := range dbs {
		d := &dbs[i]
		if d.State == "" {
			// Its row of sys.databases did not read: neither a new
			// database nor a dropped one. Keep what was known.
			if old := byID[d.ID]; old != nil {
				seen[old.GetName()] = true
			} else if d.Name != "" {
				seen[d.Name] = true
			}
			continue
		}
		cur := databaseInfo(d)
		seen[cur.Name] = true
		old, ok := prev[cur.Name]
		if ok && sameDatabase(old, cur) {
			keepUnknown(old, cur, d)
		}
		switch {
		case !ok:
			err = s.discovered(ctx, instance, cur, now)
		case !sameDatabase(old, cur):
			if err = s.dropped(ctx, instance, old, now, false); err == nil {
				err = s.discovered(ctx, instance, cur, now)
			}
		case !proto.Equal(tracked(old), tracked(cur)):
			err = s.changed(ctx, instance, old, cur, now)
		case !proto.Equal(old, cur):
			// Only sizes or the collation moved: keep the record current
			// without an event.
			if _, err = s.inventory.Put(ctx, catalog.Key(instance, cur.Name), cur); err != nil {
				err = fmt.Errorf("write inventory of %s/%s: %w", instance, cur.Name, err)
			}
		}
		if err != nil {
			return 0, err
		}
	}
	var gone []string
	for name := range prev {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		if err := s.dropped(ctx, instance, prev[name], now, true); err != nil {
			return 0, err
		}
	}
	return len(dbs), nil
}

// keepUnknown fills in cur what SQL Server did not show this time from
// old, the record of the same database: the settings sys.databases shows
// NULL while a database is not online or AUTO_CLOSE has shut it down, the
// log chain state that is not read of a closed database (reading it would
// start the database), and the files of a database whose files did not
// read. Unknown is not a change.
func keepUnknown(old, cur *cofferv1.DatabaseInfo, d *mssql.Database) {
	if d.Unknown {
		cur.RecoveryModel, cur.ReadOnly, cur.UserAccess = old.GetRecoveryModel(), old.GetReadOnly(), old.GetUserAccess()
		cur.InStandby, cur.Encrypted, cur.Collation = old.GetInStandby(), old.GetEncrypted(), old.GetCollation()
	}
	if d.Closed || (d.Problem != "" && cur.GetRecoveryForkGuid() == "") {
		cur.LastLogBackupLsn, cur.RecoveryForkGuid = old.GetLastLogBackupLsn(), old.GetRecoveryForkGuid()
	}
	if d.Problem != "" && len(cur.GetFiles()) == 0 {
		cur.Files, cur.DifferentialBaseLsn, cur.SizeBytes = old.GetFiles(), old.GetDifferentialBaseLsn(), old.GetSizeBytes()
	}
}

func (s *Service) discovered(ctx context.Context, instance string, d *cofferv1.DatabaseInfo, now time.Time) error {
	id := event.ID("database.discovered", instance, d.GetName(), createStamp(d), strconv.Itoa(int(d.GetDatabaseId())))
	ev := &cofferv1.DatabaseDiscovered{Meta: event.Meta(id, "", now), Instance: instance, Database: d}
	// The record is written first: whoever the event reaches (autoprotect,
	// then the scheduler) reads the inventory and must find it there. If
	// the event cannot be published the record is taken back, so the next
	// look finds the database new again and publishes then.
	key := catalog.Key(instance, d.GetName())
	if _, err := s.inventory.Put(ctx, key, d); err != nil {
		return fmt.Errorf("write inventory of %s/%s: %w", instance, d.GetName(), err)
	}
	if err := s.bus.Publish(ctx, cofferv1.SubjectDatabaseDiscovered, ev, id); err != nil {
		if derr := s.inventory.Delete(context.WithoutCancel(ctx), key); derr != nil && !errors.Is(derr, catalog.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("take back inventory of %s/%s: %w", instance, d.GetName(), derr))
		}
		return fmt.Errorf("publish discovery of %s/%s: %w", instance, d.GetName(), err)
	}
	s.log.InfoContext(ctx, "database discovered", slog.String(telemetry.InstanceKey, instance),
		slog.String(telemetry.DatabaseKey, d.GetName()), slog.String("state", d.GetState()),
		slog.String("recovery_model", d.GetRecoveryModel()), slog.Bool("snapshot", d.GetSnapshot()))
	return nil
}

// changed publishes and records a change of a known database. The event id
// holds the revision the change follows, so a state that comes back (FULL,
// SIMPLE, FULL again) is a new event each time.
func (s *Service) changed(ctx context.Context, instance string, old, cur *cofferv1.DatabaseInfo, now time.Time) error {
	key := catalog.Key(instance, cur.GetName())
	rev, err := s.inventory.Get(ctx, key, &cofferv1.DatabaseInfo{})
	if err != nil {
		return fmt.Errorf("read inventory of %s/%s: %w", instance, cur.GetName(), err)
	}
	id := event.ID("database.changed", instance, cur.GetName(), strconv.FormatUint(rev, 10), stateHash(cur))
	ev := &cofferv1.DatabaseChanged{Meta: event.Meta(id, "", now), Instance: instance, Database: cur, Previous: old}
	if err := s.bus.Publish(ctx, cofferv1.SubjectDatabaseChanged, ev, id); err != nil {
		return fmt.Errorf("publish change of %s/%s: %w", instance, cur.GetName(), err)
	}
	if _, err := s.inventory.Update(ctx, key, cur, rev); err != nil {
		return fmt.Errorf("write inventory of %s/%s: %w", instance, cur.GetName(), err)
	}
	s.log.InfoContext(ctx, "database changed", slog.String(telemetry.InstanceKey, instance),
		slog.String(telemetry.DatabaseKey, cur.GetName()), slog.String("state", cur.GetState()),
		slog.String("recovery_model", cur.GetRecoveryModel()), slog.Bool("read_only", cur.GetReadOnly()))
	return nil
}

// dropped publishes the end of a database and, when del, removes it from
// the inventory (a database created again under the name overwrites it
// instead).
func (s *Service) dropped(ctx context.Context, instance string, d *cofferv1.DatabaseInfo, now time.Time, del bool) error {
	id := event.ID("database.dropped", instance, d.GetName(), createStamp(d), strconv.Itoa(int(d.GetDatabaseId())))
	ev := &cofferv1.DatabaseDropped{Meta: event.Meta(id, "", now), Instance: instance, Database: d.GetName()}
	if err := s.bus.Publish(ctx, cofferv1.SubjectDatabaseDropped, ev, id); err != nil {
		return fmt.Errorf("publish drop of %s/%s: %w", instance, d.GetName(), err)
	}
	if del {
		if err := s.inventory.Delete(ctx, catalog.Key(instance, d.GetName())); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return fmt.Errorf("delete inventory of %s/%s: %w", instance, d.GetName(), err)
		}
	}
	s.log.InfoContext(ctx, "database dropped", slog.String(telemetry.InstanceKey, instance),
		slog.String(telemetry.DatabaseKey, d.GetName()))
	return nil
}
