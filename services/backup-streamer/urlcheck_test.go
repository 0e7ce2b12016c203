package streamer_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/mssql"
	"github.com/cofferhq/coffer/pkg/mssqlsim"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	streamer "github.com/cofferhq/coffer/services/backup-streamer"
)

// checkURL asks the streamers, over the bus as the gateway does, for the
// URL check of instance, once a streamer answers (the test's is
// starting).
func (e *env) checkURL(instance string) *cofferv1.URLCheckResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res cofferv1.URLCheckResult
	var err error
	waitFor(e.t, 10*time.Second, "a streamer to answer URL checks", func() bool {
		err = e.bus.Request(ctx, cofferv1.SubjectURLCheck, &cofferv1.URLCheckRequested{Instance: instance}, &res)
		return !errors.Is(err, bus.ErrNoResponder)
	})
	if err != nil {
		e.t.Fatalf("URL check of %s: %v", instance, err)
	}
	return &res
}

// modelBackups lists the backups of model that msdb records: whether each
// is copy-only, and its device.
func (e *env) modelBackups() (copyOnly []bool, devices []string) {
	e.t.Helper()
	rows, err := e.sqlDB().QueryContext(context.Background(), `SELECT bs.is_copy_only, mf.physical_device_name
		FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id
		WHERE bs.database_name = 'model' ORDER BY bs.backup_set_id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c bool
		var d string
		if err := rows.Scan(&c, &d); err != nil {
			e.t.Fatal(err)
		}
		copyOnly, devices = append(copyOnly, c), append(devices, d)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return copyOnly, devices
}

// modelChain reads what SQL Server says of model's backup chain.
func (e *env) modelChain() mssql.Chain {
	e.t.Helper()
	c, err := mssql.Open(e.dsn())
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.ChainState(context.Background(), "model")
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// wantProblem fails the test unless res reports a problem in URL mode
// whose text and fix name every one of the words.
func wantProblem(t *testing.T, res *cofferv1.URLCheckResult, problem []string, fix []string) {
	t.Helper()
	if res.GetOk() || res.GetMode() != "url" {
		t.Fatalf("check: ok %v, mode %q; want a problem in URL mode (%+v)", res.GetOk(), res.GetMode(), res)
	}
	for _, w := range problem {
		if !strings.Contains(res.GetProblem(), w) {
			t.Errorf("problem %q; want it to say %q", res.GetProblem(), w)
		}
	}
	for _, w := range fix {
		if !strings.Contains(res.GetFix(), w) {
			t.Errorf("fix %q; want it to say %q", res.GetFix(), w)
		}
	}
}

// TestURLCheck: SQL Server 2022 that trusts the streamer's CA backs up
// model to the streamer's endpoint: the check passes, naming the address
// it checked. The backup is copy-only (msdb says so, and model's chain is
// as it was), to a throwaway URL of the check's own, and no credential is
// left on the server.
func TestURLCheck(t *testing.T) {
	e, _, _ := urlEnv(t)
	before := e.modelChain()
	res := e.checkURL(instName)
	if !res.GetOk() || res.GetMode() != "url" || res.GetProblem() != "" {
		t.Fatalf("check: %+v; want ok in URL mode", res)
	}
	if !strings.HasPrefix(res.GetStreamer(), "127.0.0.1:") || res.GetInstance() != instName {
		t.Errorf("check of %q at %q; want %q at the endpoint's loopback address", res.GetInstance(), res.GetStreamer(), instName)
	}
	copyOnly, devices := e.modelBackups()
	if len(copyOnly) != 1 || !copyOnly[0] {
		t.Errorf("msdb shows backups of model copy-only %v; want one, copy-only", copyOnly)
	}
	if want := "s3://" + res.GetStreamer() + "/coffer/check-"; len(devices) != 1 || !strings.HasPrefix(devices[0], want) {
		t.Errorf("model backed up to %v; want a throwaway URL under %s", devices, want)
	}
	if after := e.modelChain(); after != before {
		t.Errorf("model's backup chain changed: %+v, was %+v", after, before)
	}
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
	e.stagingEmpty()
}

// TestURLCheckUntrusted: a SQL Server whose host does not trust coffer's
// CA fails the check with error 12175, and the fix says how to trust the
// CA on Linux and on Windows. The check's credential is gone.
func TestURLCheckUntrusted(t *testing.T) {
	e, _, _ := urlEnvWith(t, func(sim *mssqlsim.Config, _ *streamer.Config) { sim.TrustedCAs = nil })
	res := e.checkURL(instName)
	wantProblem(t, res, []string{"does not trust", "12175", res.GetStreamer()},
		[]string{"/var/opt/mssql/security/ca-certificates/coffer-ca.crt", "restart SQL Server", "Import-Certificate", `Cert:\LocalMachine\Root`})
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
}

// TestURLCheckUnreachable: a streamer that advertises an address SQL
// Server cannot connect to fails the check with error 12029, and the fix
// names the setting of the advertised address and the address itself.
func TestURLCheckUnreachable(t *testing.T) {
	// a loopback port nothing listens on
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	e := newEnv(t, envOptions{})
	cfg := e.streamerConfig()
	// no connection reaches the endpoint, so it needs no certificate
	cfg.Endpoint = streamer.Endpoint{Addr: "127.0.0.1:0", Advertise: closed, TLS: &tls.Config{}}
	e.startStreamer(cfg)

	res := e.checkURL(instName)
	if res.GetStreamer() != closed {
		t.Errorf("checked %q; want the advertised %q", res.GetStreamer(), closed)
	}
	wantProblem(t, res, []string{"cannot reach", "12029", closed}, []string{"--url-advertise", "COFFER_URL_ADVERTISE", closed})
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("credentials left on the server: %v", creds)
	}
}

// TestURLCheckModes: the check says which mode an instance's jobs use and
// why, and backs nothing up where they do not use URL mode: SQL Server
// 2019 keeps disk mode, as does an instance set to it; an instance set to
// URL mode on SQL Server 2019 cannot have it, and the fix says how to set
// disk mode; an unknown instance is named as such.
func TestURLCheckModes(t *testing.T) {
	e, _, _ := urlEnvWith(t, func(sim *mssqlsim.Config, _ *streamer.Config) { sim.MajorVersion = 15 })
	res := e.checkURL(instName)
	if !res.GetOk() || res.GetMode() != "disk" || !strings.Contains(res.GetModeReason(), "SQL Server 2019") ||
		!strings.Contains(res.GetModeReason(), "no S3 connector") {
		t.Errorf("SQL Server 2019: %+v; want ok in disk mode, for want of an S3 connector", res)
	}
	e.registerMode(instName, e.addr, "disk")
	if res := e.checkURL(instName); !res.GetOk() || res.GetMode() != "disk" || !strings.Contains(res.GetModeReason(), "set to disk mode") {
		t.Errorf("set to disk mode: %+v; want ok in disk mode, as set", res)
	}
	e.registerMode(instName, e.addr, "url")
	wantProblem(t, e.checkURL(instName), []string{"SQL Server 2019", "no S3 connector"}, []string{"--mode disk"})
	if copyOnly, _ := e.modelBackups(); len(copyOnly) != 0 {
		t.Errorf("%d backups of model where no check needed one", len(copyOnly))
	}
	if res := e.checkURL("nope"); res.GetOk() || !strings.Contains(res.GetProblem(), "not registered") {
		t.Errorf("unknown instance: %+v; want it named unregistered", res)
	}
}
