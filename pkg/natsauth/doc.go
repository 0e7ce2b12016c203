// Package natsauth turns the service access table ([topology.Services])
// into NATS permissions, one user per service, and writes what an operator
// deploys: the nats-server accounts block that declares those users, and
// each service's credentials (an nkey seed file).
//
// A service's user may publish exactly the events it publishes, create and
// pull exactly its durable consumers (and acknowledge their messages),
// write only the buckets it owns and read only the ones it reads. Beyond
// that every service may create or update coffer's streams and buckets,
// since each sets up the topology at start (topology.Setup); it may not
// delete or purge any of them. Replies come to an inbox of the service's
// own ([InboxPrefix]), so no service sees another's replies.
//
// The permissions are derived from subjects and names, never written out
// by hand: a subject renamed in proto/coffer/v1 is renamed here too.
package natsauth
