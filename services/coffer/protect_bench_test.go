package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/pkg/catalog"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	"github.com/cofferhq/coffer/pkg/vault"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/services/gateway"
)

// BenchmarkNewDatabaseProtected measures, through every service of
// `coffer up` with its default settings, the time from CREATE DATABASE on
// an auto-protected instance to the first full backup of the database
// committed in the vault. Each iteration creates one database, at a random
// moment relative to discovery's poll; the databases are created a
// little apart so that they do not queue behind each other. It reports
// the p50, p99 and worst latency, and what one discovery poll costs at
// 1,000 databases (batches and rows SQL Server serves, and time).
//
//	go test -run '^$' -bench BenchmarkNewDatabaseProtected -benchtime 100x ./services/coffer/
func BenchmarkNewDatabaseProtected(b *testing.B) {
	ctx := b.Context()
	sim := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", DefaultPages: 64, BackupDir: b.TempDir()})
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })
	dsn := (&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String()

	data := b.TempDir()
	key := hex.EncodeToString(vault.GenerateMasterKey())
	c, err := parseUpFlags([]string{"--data", data, "--http", "127.0.0.1:0", "--workers", "4"}, func(k string) string {
		if k == "COFFER_MASTER_KEY" {
			return key
		}
		return ""
	}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	r, err := startStack(ctx, c, io.Discard, slog.New(slog.DiscardHandler), noop.NewTracerProvider())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.stop() })

	// The first full of each database, as the committer announces it.
	var mu sync.Mutex
	committed := map[string]time.Time{}
	sub, err := r.nc.Subscribe(cofferv1.SubjectRecoveryPointCommitted, func(m *nats.Msg) {
		var ev cofferv1.RecoveryPointCommitted
		if proto.Unmarshal(m.Data, &ev) != nil {
			return
		}
		rp := ev.GetRecoveryPoint()
		if rp.GetBackup().GetType() != cofferv1.BackupType_BACKUP_TYPE_FULL {
			return
		}
		mu.Lock()
		if _, ok := committed[rp.GetDatabase().GetDatabase()]; !ok {
			committed[rp.GetDatabase().GetDatabase()] = time.Now()
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sub.Unsubscribe() })

	api := newAPIClient(r.apiURL, "")
	if err := api.do(ctx, "POST", "/api/v1/instances", gateway.AddInstance{Name: "sql1", DSN: dsn}, nil); err != nil {
		b.Fatal(err)
	}
	if err := api.do(ctx, "PUT", "/api/v1/instances/sql1/autoprotect", gateway.Autoprotect{Enabled: true}, nil); err != nil {
		b.Fatal(err)
	}
	// Wait for the first discovery, so what follows measures new
	// databases only.
	waitFor(b, time.Minute, func() bool {
		_, err := r.cat.Bucket(cofferv1.BucketInventory).Get(ctx, catalog.Key("sql1", "master"), &cofferv1.DatabaseInfo{})
		return err == nil
	})

	created := map[string]time.Time{}
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("bench %03d", i)
		if err := sim.CreateDatabase(name, mssqlsim.DatabaseOptions{}); err != nil {
			b.Fatal(err)
		}
		created[name] = time.Now()
		// 0.3 s to 0.9 s apart: creations fall at every phase of the poll
		time.Sleep(300*time.Millisecond + rand.N(600*time.Millisecond))
	}
	waitFor(b, 2*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for name := range created {
			if _, ok := committed[name]; !ok {
				return false
			}
		}
		return true
	})
	b.StopTimer()
	var lat []time.Duration
	mu.Lock()
	for name, t0 := range created {
		lat = append(lat, committed[name].Sub(t0))
	}
	mu.Unlock()
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))].Seconds() }
	b.ReportMetric(q(0.50), "p50-s")
	b.ReportMetric(q(0.99), "p99-s")
	b.ReportMetric(lat[len(lat)-1].Seconds(), "max-s")

	pollCost(b)
}

// pollCost measures discovery's light query against an instance of 1,000
// databases: what SQL Server serves for it and how long it takes.
func pollCost(b *testing.B) {
	sim := mssqlsim.New(mssqlsim.Config{SAPassword: "Sim-Pa55!", DefaultPages: 8})
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })
	for k := range 1000 {
		if err := sim.CreateDatabase(fmt.Sprintf("db%04d", k), mssqlsim.DatabaseOptions{Pages: 8}); err != nil {
			b.Fatal(err)
		}
	}
	cl, err := mssql.Open((&url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", "Sim-Pa55!"), Host: addr, RawQuery: "encrypt=disable"}).String())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if _, err := cl.Fingerprint(ctx); err != nil { // connect
		b.Fatal(err)
	}
	const polls = 50
	before, t0 := sim.Stats(), time.Now()
	for range polls {
		if _, err := cl.Fingerprint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	light := time.Since(t0) / polls
	after := sim.Stats()
	t0 = time.Now()
	if _, err := cl.Databases(ctx); err != nil {
		b.Fatal(err)
	}
	full := time.Since(t0)
	afterFull := sim.Stats()
	b.ReportMetric(float64(after.Batches-before.Batches)/polls, "poll-batches@1000db")
	b.ReportMetric(float64(after.RowsSent-before.RowsSent)/polls, "poll-rows@1000db")
	b.ReportMetric(float64(light.Microseconds())/1000, "poll-ms@1000db")
	b.ReportMetric(float64(full.Microseconds())/1000, "full-list-ms@1000db")
	b.ReportMetric(float64(afterFull.RowsSent-after.RowsSent), "full-list-rows@1000db")
}

// waitFor polls cond until it holds, or fails the test or benchmark
// after within.
func waitFor(b testing.TB, within time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
