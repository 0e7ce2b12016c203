// Package vault stores backup streams content-addressed, encrypted and
// deduplicated on a [blob.Store].
//
// A stream written with [Vault.NewWriter] is cut into chunks at
// content-defined boundaries (FastCDC: 64 KiB to 1 MiB, about 256 KiB on
// average, in a new vault; 256 KiB to 4 MiB, about 1 MiB, in one upgraded
// from format 1, so that it keeps deduplicating), so identical data cuts
// identically in every backup and an edit disturbs only the chunks around
// it. Each chunk is named by the keyed BLAKE3 hash of its plaintext,
// compressed with zstd when that shrinks it, sealed with AES-256-GCM, and
// stored once, in a pack of many chunks (about 16 MiB) that a writer fills
// and stores a few at once; index objects list the packs' chunks, and each
// vault keeps their union in memory, so that deduplication asks the store
// nothing and a chunk is read with one ranged GET. [Vault.NewReader]
// reassembles a stream, verifying every chunk before returning its bytes.
// [Vault.NewReaderAt] reads a stream at any offset, as ranged GETs of a
// RESTORE FROM URL do, through a precomputed offset table and a small cache
// of verified chunks with read-ahead; [Vault.VerifyStream] reads a whole
// stream only to verify it, so that a restore over a database can start
// knowing that every chunk it needs is there and sound. [Vault.Collect]
// removes chunks no recovery point needs, repacking the packs that hold
// some of them.
//
// A [Manifest] lists a stream's chunks with the caller's metadata; it is
// sealed too and stored at manifests/<id>, and writing it is the commit of a
// recovery point. A draft ([Vault.PutDraft]) is a manifest stored before
// its commit, by the writer's process, so that the chunk list of a large
// stream need not travel in a message; garbage collection counts it as a
// root until it is deleted.
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
// rewriting anything.
//
// # Store layout
//
//	config                   the vault's format and chunking (JSON; config.go)
//	keys/<key id>            vault key wrapped by the master key (JSON)
//	packs/<xx>/<pack id>     sealed chunks, then the pack's sealed header (pack.go)
//	index/<index id>         sealed list of packs and their chunks
//	chunks/<xx>/<chunk id>   sealed chunk stored alone (format 1; read, never written)
//	manifests/<manifest id>  sealed manifest
//	drafts/<manifest id>     sealed manifest not committed yet (a stream's chunk list)
//
// A vault written by coffer before packs (format 1: no config, a chunk per
// object) opens as it is: its chunks are read and deduplicated against
// where they are, new data goes into packs, and Open writes the config.
//
// The package knows nothing of SQL Server: a backup's details travel in
// Manifest.Meta.
package vault
