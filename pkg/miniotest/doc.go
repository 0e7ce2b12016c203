// Package miniotest runs a real MinIO server on loopback, over TLS, for
// tests.
//
// Each call to [Start] launches its own minio process with a fresh data
// directory, a freshly generated certificate authority and server
// certificate, random root credentials and free ports, so any number of
// tests and test packages may run servers side by side. The server is
// stopped when the test that started it ends.
//
//	func TestUpload(t *testing.T) {
//		srv := miniotest.Start(t)
//		srv.MakeBucket(t, "backups")
//		client := srv.Client(t)
//		// ... exercise code under test against client or srv.Endpoint,
//		// trusting srv.CertPool() or srv.CAFile.
//	}
//
// The minio binary is looked up in the COFFER_MINIO_BIN environment
// variable, then on PATH, then in $GOPATH/bin. When it is missing, tests are
// skipped with a hint to run `make tools`, except when the CI environment
// variable is set, where a missing binary fails the test instead: CI must
// never pass by skipping.
package miniotest
