package gateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// TestCheckURL: the check of a registered instance is asked of a
// backup-streamer over the bus, and its answer returned as JSON, a
// problem included; an unknown instance is a 404 that asks nothing; with
// no streamer running the answer is a 503 that says so.
func TestCheckURL(t *testing.T) {
	e := newEnv(t, "")
	if _, err := e.cat.Bucket(cofferv1.BucketInstances).Put(t.Context(), catalog.Key("sql1"), &cofferv1.Instance{Name: "sql1"}); err != nil {
		t.Fatal(err)
	}
	if status, body := e.do(t, "POST", "/api/v1/instances/sql1/check-url", "", ""); status != 503 || !containsAll(body, "no backup-streamer", "sql1") {
		t.Errorf("no streamer: %d %s; want 503 saying no backup-streamer runs", status, body)
	}

	// a stand-in backup-streamer
	asked := make(chan string, 4)
	stop, err := e.bus.Serve(t.Context(), cofferv1.SubjectURLCheck, "backup-streamer", func(_ context.Context, data []byte) (proto.Message, error) {
		var req cofferv1.URLCheckRequested
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		asked <- req.GetInstance()
		return &cofferv1.URLCheckResult{Instance: req.GetInstance(), Streamer: "10.0.0.5:9443", Mode: "url", ModeReason: "SQL Server 2022",
			Problem: "SQL Server cannot reach the streamer", Fix: "set --url-advertise"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	status, body := e.do(t, "POST", "/api/v1/instances/sql1/check-url", "", "")
	var got gateway.URLCheck
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("check: %d %s (%v); want 200 with the streamer's answer", status, body, err)
	}
	want := gateway.URLCheck{Instance: "sql1", Streamer: "10.0.0.5:9443", Mode: "url", ModeReason: "SQL Server 2022",
		Problem: "SQL Server cannot reach the streamer", Fix: "set --url-advertise"}
	if got != want {
		t.Errorf("check: %+v; want %+v", got, want)
	}
	if status, body := e.do(t, "POST", "/api/v1/instances/nope/check-url", "", ""); status != 404 || !containsAll(body, "not registered") {
		t.Errorf("unknown instance: %d %s; want 404", status, body)
	}
	if n := len(asked); n != 1 || <-asked != "sql1" {
		t.Errorf("the streamer was asked %d times; want once, for sql1", n)
	}
}

func containsAll(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
