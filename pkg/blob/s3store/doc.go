// Package s3store is a [blob.Store] in an S3 bucket, spoken to with
// minio-go: AWS S3, MinIO, and other S3-compatible object stores.
//
// Each key is stored as the object Prefix+key. Uploads state their size, so
// objects up to 16 MiB go up in one atomic PUT, larger ones as a multipart
// upload that S3 makes visible only when complete. No MD5 is computed:
// over TLS the payload is sent unsigned with a CRC32C trailer the server
// checks; over plain HTTP it is signed with SHA-256 instead.
package s3store
