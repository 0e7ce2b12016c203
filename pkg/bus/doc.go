// Package bus is coffer's JetStream plumbing: streams, protobuf events,
// durable pull consumers, and an embedded server for `coffer up` and tests.
//
// What it guarantees:
//
//   - Publish stores a protobuf message and returns only after JetStream
//     acknowledged it. The caller's idempotency key becomes Nats-Msg-Id, so
//     a retried publish within the stream's duplicate window is stored
//     once. The payload's full protobuf name travels in the Content-Type
//     header, the trace context (W3C traceparent, baggage) in the other
//     headers. No stream for the subject is reported as [ErrNoStream].
//   - Consume delivers each message at least once to one of the
//     subscriptions sharing a durable consumer, in this process or others;
//     that is how a worker pool scales. Acknowledgement is explicit and
//     follows the handler's result: success acks (and waits for the
//     server's confirmation), [Permanent] or [ErrMalformed] terminates after
//     Config.OnPoison, any other error naks with a delay, and the last
//     allowed delivery's failure is poison too. While a handler runs the
//     bus sends "in progress" every AckWait/3, so slow work is not
//     redelivered to another worker. A subscription pulls only as many
//     messages as it has free handlers.
//   - The handler's context carries a consumer span whose parent is the
//     publisher's span, so one job is one trace across services.
//   - Shutdown is staged: Stop stops pulling and cancels handlers; Drain
//     stops pulling, waits for running handlers and their settlements, and
//     falls back to Stop when its context ends.
//   - StreamSpec and EnsureStream make stream setup idempotent: every
//     service may ensure the streams it uses at start.
//   - Request and Serve are protobuf request/reply over core NATS, for a
//     question someone waits for (such as "can this instance reach a
//     streamer?"): nothing is stored, each request goes to one responder
//     of a queue group, and none running is reported at once as
//     [ErrNoResponder]. The trace context travels as with Publish.
//
// Subject and stream names are not defined here: they live with the event
// contracts. The package reads no environment and keeps no globals;
// loggers, tracer providers and propagators are injected through [Config].
package bus
