// Package dirstore is a [blob.Store] kept in a local directory, one file per
// object, for a laptop, a small site, a mounted NAS and the tests.
//
// Keys map to paths below the root: "chunks/ab/abcd" is ROOT/chunks/ab/abcd.
// A Put writes a temporary file beside its target, syncs it, renames it over
// the target and syncs the directory, so an object is either absent or
// complete, even across a crash. Temporary files start with a dot, which no
// key may, so List never shows them; a crash can leave one behind, and
// removing files named ".tmp-*" that are older than any running Put is safe.
//
// Empty directories left by Delete are not removed.
package dirstore
