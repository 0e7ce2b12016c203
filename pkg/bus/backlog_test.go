package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cofferhq/coffer/pkg/bus"
)

// TestBacklog: Backlog reports the consumers this bus consumes, with the
// messages waiting and those being handled, and forgets a stopped one.
func TestBacklog(t *testing.T) {
	e := newEnv(t, bus.Config{})
	subject := e.stream(t, "BACKLOG", bus.Limits)
	for i := range 5 {
		if err := e.bus.Publish(t.Context(), subject+".x", wrapperspb.String("x"), fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	sub, err := e.bus.Consume(t.Context(), bus.ConsumerSpec{Stream: "BACKLOG", Durable: "slow"}, func(ctx context.Context, m *bus.Message) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := bus.Backlog{Stream: "BACKLOG", Consumer: "slow", Pending: 4, AckPending: 1}
	var got []bus.Backlog
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, err = e.bus.Backlog(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0] == want {
			break
		}
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Backlog() = %+v; want [%+v]", got, want)
	}
	close(release)
	sub.Stop()
	<-sub.Done()
	if got, err := e.bus.Backlog(t.Context()); err != nil || len(got) != 0 {
		t.Errorf("Backlog() after Stop = %+v, %v; want nothing", got, err)
	}
}
