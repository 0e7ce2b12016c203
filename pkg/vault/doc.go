// Package vault stores backup streams content-addressed, encrypted and
// deduplicated on a [blob.Store].
//
// A stream written with [Vault.NewWriter] is cut into chunks at
// content-defined boundaries (FastCDC: 64 KiB to 1 MiB, about 256 KiB on
// average, in a new vault; 256 KiB to 4 MiB, about 1 MiB, in one upgraded
// from format 1, so that it keeps deduplicating), so identical data cuts
// identically in every backup and an edit disturbs only the chunks around
// it. Each chunk is named by the keyed BLAKE3 hash of its plaintext,
// compressed when that shrinks it (with zstd, or S2 or not at all as the
// writer's [Compression] says), sealed with AES-256-GCM, and
// stored once, in a pack of many chunks (about 16 MiB) that a writer fills
// and stores a few at once; index objects list the packs' chunks, and each
// vault keeps their union in memory, so that deduplication asks the store
// nothing and a chunk is read with one ranged GET. [Vault.NewReader]
// reassembles a stream, verifying every chunk before returning its bytes.
// [Vault.NewReaderAt] reads a stream at any offset, as ranged GETs of a
// RESTORE FROM URL do, through a precomputed offset table and a small cache
// of verified chunks with read-ahead; with [ReaderAtOptions.Forward], the
// ranges read in order ([ReaderAt.Section]) take their turns on one
// sequential reader instead. [Vault.VerifyStream] reads a whole
// stream only to verify it, so that a restore over a database can start
// knowing that every chunk it needs is there and sound.
//
// A [Manifest] lists a stream's chunks with the caller's metadata; it is
// sealed too and stored at manifests/<id>, and writing it is the commit of a
// recovery point. A draft ([Vault.PutDraft]) is a manifest stored before
// its commit, by the writer's process, so that the chunk list of a large
// stream need not travel in a message; garbage collection counts it as a
// root until it is deleted.
//
// # Garbage collection
//
// [Vault.Collect] removes the chunks no manifest or draft names,
// repacking the packs that hold some of them, and is safe against writers
// in other processes that share nothing with it but the store. A writer
// deduplicates against the chunks its process knows, without asking the
// store, so collection must know which chunks a running writer may be
// about to name. Every writer holds a [Session] ([Vault.OpenSession]),
// an object it refreshes while it runs; a backup opens one before its
// writers and closes it once its draft is stored. Collection is in two
// phases: one collection condemns what no root names, recording where it
// is stored in a generation object; writers whose session opens later
// store those chunks again rather than deduplicate against them; a later
// collection deletes what the generation condemned once every live
// session knows of it, sparing whatever a root names by then. A session
// not refreshed within its lease is a dead writer's, and no longer waited
// for. Only one collection runs at a time. collect.go says why the order
// of the steps makes this safe, with no clock but the store's.
//
// # Keys
//
// The operator holds a 32-byte master key. The vault has random 32-byte
// vault keys, stored only wrapped by the master key at keys/<key id>, from
// which separate subkeys are derived with BLAKE3's key derivation: one for
// chunk ids and the chunker's gear table (from the first vault key, for the
// vault's life, so that deduplication survives rotation), one for sealing
// chunks and one for sealing manifests. Every sealed object records the id
// of the key that sealed it; [Vault.AddKey] rotates to a new key without
// rewriting anything. [Rekey] wraps every vault key anew with a new master
// key, rewriting only the key records, in steps that leave the vault
// opening with exactly one of the two master keys whenever it stops
// (rekey.go). Init creates the first vault key at random, under an id
// derived from the master key and only if that record does not exist
// ([blob.Create]), so that Inits racing on one store agree on it; vaults
// made before derived the key itself from the master key. A vault that
// meets an object sealed with a key it does not have reads the keys
// again, to find one another process added since it was opened.
//
// # Store layout
//
//	config                   the vault's format and chunking (JSON; config.go)
//	keys/<key id>            vault key wrapped by the master key (JSON)
//	rekey/keys/<key id>      vault key wrapped by a new master key, while a
//	                         rekey runs (rekey.go)
//	rekey/commit             the marker of a rekey that committed and is not
//	                         finished (JSON)
//	packs/<xx>/<pack id>     sealed chunks, then the pack's sealed header (pack.go)
//	index/<index id>         sealed list of packs and their chunks
//	chunks/<xx>/<chunk id>   sealed chunk stored alone (format 1; read, never written)
//	manifests/<manifest id>  sealed manifest
//	drafts/<manifest id>     sealed manifest not committed yet (a stream's chunk list)
//	sessions/<session id>    a running writer's session (JSON; session.go)
//	condemned/<generation>   sealed list of chunk locations, and unlisted packs,
//	                         that garbage collection will delete (condemned.go)
//
// A vault written by coffer before packs (format 1: no config, a chunk per
// object) opens as it is: its chunks are read and deduplicated against
// where they are, new data goes into packs, and Open writes the config.
//
// # Immutability
//
// In a store with S3 Object Lock ([blob.Locker]), [EnableObjectLock] makes
// a vault immutable (format 3): [Vault.RetainManifest] locks a recovery
// point's manifest, the packs holding its chunks, the key records and the
// config until it expires, so that the store refuses to delete them before,
// to anyone. Deletes then remove every version, garbage collection leaves
// what is still locked for a later collection, and [Vault.Recover] brings
// back locked objects hidden by delete markers. lock.go has the details.
//
// # Compression
//
// Each sealed chunk says how its payload is compressed (zstd, S2, or not
// at all), so readers need no setting and one vault holds chunks of every
// kind: a writer's Compression applies to the chunks it stores, and a
// chunk the vault already has is not stored again however it was
// compressed, since its id is of its plaintext. Changing a policy's
// compression therefore changes new data only. A stream whose chunks stop
// shrinking (Transparent Data Encryption, a backup SQL Server compressed)
// is only sampled, one chunk in 16, and stored as it is.
//
// S2 is newer than the vault's format: an S2 chunk carries a flag of the
// sealed header that coffer before S2 does not know, so a vault holding
// S2 chunks must be read, checked and collected by a coffer that knows
// S2 (this one or later); an earlier one refuses such a chunk as corrupt
// (unknown flags). Vaults holding only zstd or uncompressed chunks, as
// every earlier coffer wrote them, read as before.
//
// The package knows nothing of SQL Server: a backup's details travel in
// Manifest.Meta.
package vault
