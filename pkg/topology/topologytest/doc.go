// Package topologytest provides test helpers for services: an embedded NATS
// JetStream server with coffer's topology set up, and a way to read back the
// events a test caused.
//
// A service's test starts one world per test with [Start], builds the
// service on [Env.Bus] and [Env.Catalog], and checks what it published with
// [Events]:
//
//	func TestSomething(t *testing.T) {
//		e := topologytest.Start(t, bus.Config{})
//		svc, err := myservice.New(e.Bus, e.Catalog, myservice.Config{})
//		// ... run svc, publish, then:
//		failed := topologytest.Events(t, e, cofferv1.SubjectJobFailed,
//			func() *cofferv1.JobFailed { return &cofferv1.JobFailed{} })
//	}
//
// Everything Start creates is private to the test (its own server, store
// directory and connection) and torn down when the test ends, so tests and
// test packages may run side by side.
package topologytest
