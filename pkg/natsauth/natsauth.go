package natsauth

import (
	"fmt"
	"slices"

	"github.com/cofferhq/coffer/pkg/topology"
)

// Permissions are one NATS user's: the subjects it may publish and
// subscribe to, and whether it may answer the requests it receives.
type Permissions struct {
	Publish        []string
	Subscribe      []string
	AllowResponses bool
}

// InboxPrefix is the inbox prefix of service's connection: replies to its
// requests (JetStream API calls, acknowledgements of its publishes, its
// own requests) and its watchers' deliveries come there, and its user may
// subscribe to nothing else of the kind.
func InboxPrefix(service string) string { return "_INBOX." + service }

// kvStream is the stream that holds a key-value bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// For returns the permissions of a's service: only what it needs.
func For(a topology.Access) Permissions {
	var pub, sub []string
	// Topology setup (topology.Setup, run by every service at start):
	// account info, and creating or updating every stream and bucket —
	// never deleting or purging one.
	pub = append(pub, "$JS.API.INFO")
	streams := make([]string, 0, len(topology.Streams)+len(topology.Buckets))
	for _, s := range topology.Streams {
		streams = append(streams, s.Name)
	}
	for _, b := range topology.Buckets {
		streams = append(streams, kvStream(b.Name))
	}
	for _, s := range streams {
		pub = append(pub, "$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s)
	}

	// Events it stores.
	pub = append(pub, a.Publishes...)

	// Its durable consumers: create or update them (the filter subject is
	// the create request's last tokens when there is one), pull, settle
	// their messages, and read back a message whose deliveries ran out
	// (bus.WatchExhausted).
	for _, c := range a.Consumes {
		pub = append(pub,
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s.%s", c.Stream, c.Durable),
			fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s.%s.>", c.Stream, c.Durable),
			fmt.Sprintf("$JS.API.CONSUMER.INFO.%s.%s", c.Stream, c.Durable),
			fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", c.Stream, c.Durable),
			fmt.Sprintf("$JS.ACK.%s.%s.>", c.Stream, c.Durable),
			"$JS.API.STREAM.MSG.GET."+c.Stream,
		)
		sub = append(sub, fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", c.Stream, c.Durable))
	}

	// Buckets it reads, its own included: a get is a direct get (or a
	// message get), a list or watch an ordered push consumer, with flow
	// control, deleted when done.
	for _, b := range topology.Buckets {
		if !a.ReadsBucket(b.Name) {
			continue
		}
		s := kvStream(b.Name)
		pub = append(pub,
			"$JS.API.DIRECT.GET."+s,
			"$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.CONSUMER.CREATE."+s,
			"$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".*",
			"$JS.API.CONSUMER.DELETE."+s+".*",
			"$JS.FC."+s+".>",
		)
	}
	// Buckets it owns: put, create, update, delete (all publishes on the
	// bucket's subjects).
	for _, b := range a.Writes {
		pub = append(pub, "$KV."+b+".>")
	}

	// Core requests.
	pub = append(pub, a.Requests...)
	sub = append(sub, a.Serves...)

	sub = append(sub, InboxPrefix(a.Service)+".>")
	return Permissions{
		Publish:        dedupe(pub),
		Subscribe:      dedupe(sub),
		AllowResponses: len(a.Serves) > 0,
	}
}

// dedupe drops repeated subjects, keeping the first of each.
func dedupe(s []string) []string {
	out := make([]string, 0, len(s))
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
