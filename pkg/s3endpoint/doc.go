// Package s3endpoint serves the part of the S3 API that SQL Server 2022's
// S3 connector uses for BACKUP ... TO URL and RESTORE ... FROM URL, so
// that a coffer streamer can be the endpoint SQL Server writes its backups
// to and reads them from, with no staging disk between SQL Server and the
// vault.
//
// What it serves: multipart uploads (create, upload part, complete,
// abort), HEAD and ranged GET of an object, and ListObjectsV2; path-style
// (https://host/bucket/key) and virtual-host (https://bucket.host/key)
// addressing. Every request must carry an AWS Signature Version 4
// Authorization header made with a key the Keys know and for a URL inside
// that key's prefix; anything else is refused with an S3 error document
// (403 for authentication, 501 for an operation it does not serve).
//
// Uploaded parts may arrive in any order and several at once, as SQL
// Server sends them (BUFFERCOUNT); the endpoint hands them to the Upload
// in part-number order, each part once, holding a part's request until
// its turn so that memory stays bounded by the requests in flight.
package s3endpoint
