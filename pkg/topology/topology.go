// Package topology declares coffer's streams, catalog buckets and durable
// consumers, so that every service sets up the same ones idempotently at
// start, whichever starts first.
package topology

import (
	"context"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Streams are the two streams: every event, and the work queue.
var Streams = []bus.StreamSpec{
	{
		Name:        cofferv1.StreamEvents,
		Subjects:    []string{cofferv1.SubjectEvents},
		Retention:   bus.Limits,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Description: "every coffer event",
	},
	{
		Name:        cofferv1.StreamJobs,
		Subjects:    []string{cofferv1.SubjectJobs},
		Retention:   bus.Limits,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Description: "the events of running jobs: progress, commits, failures",
	},
	{
		Name:        cofferv1.StreamWork,
		Subjects:    []string{cofferv1.SubjectWork},
		Retention:   bus.WorkQueue,
		Duplicates:  10 * time.Minute,
		Description: "backup and restore work, each message taken by one streamer worker",
	},
}

// Buckets are the catalog's key-value buckets, each written by one owner
// service (named in the description).
var Buckets = []catalog.BucketSpec{
	{Name: cofferv1.BucketInstances, Description: "registered instances; owner: discovery"},
	{Name: cofferv1.BucketInventory, Description: "databases of each instance; owner: discovery"},
	{Name: cofferv1.BucketProtected, Description: "protected databases; owner: scheduler"},
	{Name: cofferv1.BucketAutoprotect, Description: "auto-protection settings; owner: autoprotect"},
	{Name: cofferv1.BucketRecoveryPoints, Description: "committed recovery points; owner: committer"},
	{Name: cofferv1.BucketJobs, Description: "jobs and their outcome; owner: committer"},
	{Name: cofferv1.BucketPolicies, Description: "backup policies; owner: scheduler"},
	{Name: cofferv1.BucketSchedule, Description: "when each protected database's backups are due; owner: scheduler"},
}

// Setup creates the streams and opens the catalog.
func Setup(ctx context.Context, b *bus.Bus) (*catalog.Catalog, error) {
	for _, s := range Streams {
		if err := b.EnsureStream(ctx, s); err != nil {
			return nil, fmt.Errorf("set up stream %s: %w", s.Name, err)
		}
	}
	cat, err := catalog.Open(ctx, b.JetStream(), Buckets...)
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	return cat, nil
}
