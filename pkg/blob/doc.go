// Package blob defines the storage contract the vault is built on: a flat,
// dumb namespace of immutable-looking objects addressed by slash-separated
// keys, with nothing but put, get (whole or a byte range), stat, list and delete.
//
// Backends live in subpackages (dirstore for a local directory, s3store for
// S3 and MinIO) and each one runs the conformance suite in blobtest, so code
// written against [Store] behaves the same on all of them. Everything clever
// (encryption, compression, deduplication, retries, limits) wraps a Store; it
// never lives inside a backend.
//
// A backend may have optional capabilities, found with a type assertion:
// [Locker] (S3 Object Lock) keeps objects from deletion until a date.
package blob
