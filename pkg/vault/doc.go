// Package vault stores backup streams content-addressed, encrypted and
// deduplicated on a [blob.Store].
//
// A stream written with [Vault.NewWriter] is cut into chunks of 256 KiB to
// 4 MiB (about 1 MiB on average) at content-defined boundaries (FastCDC), so
// identical data cuts identically in every backup and an edit disturbs only
// the chunks around it. Each chunk is named by the keyed BLAKE3 hash of its
// plaintext, compressed with zstd when that shrinks it, sealed with
// AES-256-GCM, and stored once at chunks/<first two hex digits>/<id>: a
// chunk the vault already has is not uploaded again. [Vault.NewReader]
// reassembles a stream, verifying every chunk before returning its bytes.
// [Vault.NewReaderAt] reads a stream at any offset, as ranged GETs of a
// RESTORE FROM URL do, through a precomputed offset table and a small cache
// of verified chunks with read-ahead; [Vault.VerifyStream] reads a whole
// stream only to verify it, so that a restore over a database can start
// knowing that every chunk it needs is there and sound.
//
// A [Manifest] lists a stream's chunks with the caller's metadata; it is
// sealed too and stored at manifests/<id>, and writing it is the commit of a
// recovery point.
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
//	keys/<key id>            vault key wrapped by the master key (JSON)
//	chunks/<xx>/<chunk id>   sealed chunk
//	manifests/<manifest id>  sealed manifest
//
// The package knows nothing of SQL Server: a backup's details travel in
// Manifest.Meta.
package vault
