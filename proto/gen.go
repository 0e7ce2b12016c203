// Package proto holds coffer's event contracts; the Go code is generated
// into coffer/v1 by `make proto` and committed.
package proto

//go:generate protoc --proto_path=. --go_out=. --go_opt=module=github.com/cofferhq/coffer/proto coffer/v1/types.proto coffer/v1/events.proto
