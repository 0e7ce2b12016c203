// Package event holds the conventions every coffer service follows when it
// publishes: event metadata, deterministic idempotency keys, job and
// recovery point ids.
package event

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Meta returns the metadata of an event whose idempotency key is id.
func Meta(id, jobID string, t time.Time) *cofferv1.EventMeta {
	return &cofferv1.EventMeta{EventId: id, JobId: jobID, Time: timestamppb.New(t)}
}

// ID derives a deterministic idempotency key (the Nats-Msg-Id) from what
// makes an event unique: publishing the same event twice yields the same
// key, so JetStream stores it once. kind names the event; parts may hold
// any characters.
func ID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// NewJobID returns a new job id, sortable by creation time.
func NewJobID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return "j" + t.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// DerivedJobID returns the job id of work that follows deterministically
// from an event (such as the first full after protection), so a
// redelivered event queues the same job.
func DerivedJobID(t time.Time, parts ...string) string {
	id := ID("", parts...)
	return "j" + t.UTC().Format("20060102T150405") + "-" + strings.TrimPrefix(id, "-")[:8]
}

// DerivedJobTime returns the time a job id from [DerivedJobID] was derived
// from, to the second; ok is false for an id of another form.
func DerivedJobTime(id string) (t time.Time, ok bool) {
	const layout = "20060102T150405"
	if len(id) < 1+len(layout)+1 || id[0] != 'j' || id[1+len(layout)] != '-' {
		return time.Time{}, false
	}
	t, err := time.Parse(layout, id[1:1+len(layout)])
	return t, err == nil
}

// scratchPrefix starts the name of every scratch database a test restore
// creates (and drops).
const scratchPrefix = "coffer_verify_"

// ScratchDatabase names the k-th scratch database of test restore job jid.
func ScratchDatabase(jid string, k int) string { return fmt.Sprintf("%s%s_%d", scratchPrefix, jid, k) }

// IsScratch reports whether a database is a test restore's scratch
// database: never protected, gone when the test restore ends.
func IsScratch(name string) bool { return strings.HasPrefix(name, scratchPrefix) }

// RecoveryPointID is the id of the recovery point a backup job commits; it
// also names the job's manifest in the vault.
func RecoveryPointID(jobID string) string { return "rp-" + strings.TrimPrefix(jobID, "j") }

// Poisoned returns what a service reports for a message it can never
// process: a JobFailed naming the service, the subject and the error, tied
// to the message's job when it has one.
func Poisoned(service, subject string, data []byte, msgID string, err error, t time.Time) *cofferv1.JobFailed {
	var env cofferv1.Envelope
	_ = proto.Unmarshal(data, &env) // best effort: a malformed payload has no job
	return &cofferv1.JobFailed{
		Meta:    Meta(ID("poison", service, msgID, subject), env.GetMeta().GetJobId(), t),
		Reason:  fmt.Sprintf("%s could not process %s: %v", service, subject, err),
		Service: service,
	}
}
