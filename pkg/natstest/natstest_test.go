package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cofferhq/coffer/pkg/natstest"
)

// TestClusterSurvivesANode starts three nodes, stores messages in a
// stream replicated on all three, kills one node, keeps publishing, and
// restarts it: no message is lost and the stream reports three replicas
// current again.
func TestClusterSurvivesANode(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for k := from; k < to; k++ {
			for {
				// each try waits a while for its ack, not the whole
				// test's time: a publish sent as its node died may never
				// be answered; the message id makes a retry of a stored
				// message a duplicate the stream drops
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := js.Publish(pctx, "t.x", fmt.Appendf(nil, "%d", k), jetstream.WithMsgID(fmt.Sprint(k)))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v", k, err)
				}
				time.Sleep(50 * time.Millisecond) // a leader election is under way
			}
		}
	}
	publish(0, 50)
	c.Kill(0)
	publish(50, 100)
	c.Restart(t, 0)
	publish(100, 150)
	for {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		current := 0
		for _, r := range info.Cluster.Replicas {
			if r.Current {
				current++
			}
		}
		if info.State.Msgs == 150 && current == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream has %d messages and %d current followers, want 150 and 2", info.State.Msgs, current)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
