// Package blobtest is the conformance suite every [blob.Store]
// implementation runs, so that code written against the interface can rely
// on its documented contract whatever the backend:
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Store {
//			s, err := dirstore.New(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package blobtest
