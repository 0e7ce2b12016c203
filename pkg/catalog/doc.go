// Package catalog keeps coffer's shared state as protobuf values in
// JetStream key-value buckets, each bucket written by one owning service
// and read by any.
//
// What it guarantees:
//
//   - [Open] creates each bucket, or updates it to match its [BucketSpec];
//     it is idempotent, so the owner (and readers) may call it at start.
//   - Values are protobuf messages; a value that does not parse is an error,
//     never a silently empty message.
//   - Optimistic concurrency: [Bucket.Create] fails with [ErrExists] when the
//     key is live, [Bucket.Update] with [ErrConflict] when the key has moved
//     past the revision the caller read. [Bucket.Get] reports a missing or
//     deleted key as [ErrNotFound].
//   - Keys are built with [Key] from parts that may hold any text — SQL
//     Server allows ']', quotes, spaces, '/', '.', '*', '>' and any Unicode
//     letter in names — and taken apart with [SplitKey]. The encoding is
//     reversible, readable for plain names, and keeps each part one key
//     token, so listing and watching by leading parts ([Bucket.List],
//     [Bucket.Watch]) never matches a neighbour whose name merely starts the
//     same way.
//   - Names are compared as given: SQL Server's case-insensitive collations
//     are the caller's business (normalise before building a key).
package catalog
