package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/pkg/mssql"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		dsn, login, address, password string
	}{
		{"sqlserver://sa:Pa%3Ass%40w0rd@db1:14330?encrypt=disable", "sa", "db1:14330", "Pa:ss@w0rd"},
		{"sqlserver://backup%5Dop:pw-1234@db2?encrypt=true", "backup]op", "db2:1433", "pw-1234"},
		{"sqlserver://sa:pw-5678@db3/SQL2022", "sa", `db3\SQL2022`, "pw-5678"},
		{"server=db4;user id=coffer;password=S3cr3t-Ado;port=1500", "coffer", "db4:1500", "S3cr3t-Ado"},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.dsn)
		if err != nil {
			t.Errorf("parseTarget(%q): %v", tt.dsn, err)
			continue
		}
		if got.login != tt.login || got.address != tt.address {
			t.Errorf("parseTarget(%q): login %q, address %q; want %q, %q", tt.dsn, got.login, got.address, tt.login, tt.address)
		}
		msg := "failed with " + tt.dsn + " and " + tt.password + " and " + strings.ReplaceAll(tt.password, "@", "%40")
		if s := got.scrub(msg); strings.Contains(s, tt.password) || strings.Contains(s, tt.dsn) {
			t.Errorf("scrub kept a secret: %q", s)
		}
	}
}

func TestParseTargetFailureQuotesNothing(t *testing.T) {
	_, err := parseTarget("sqlserver://sa:Secret-99@host:notaport")
	if err == nil {
		t.Fatal("parseTarget of a bad port: got nil error")
	}
	if strings.Contains(err.Error(), "Secret-99") {
		t.Errorf("parse error quotes the password: %v", err)
	}
}

func TestVerdicts(t *testing.T) {
	tg := target{login: "ops]team", address: "db1:1433", secrets: []string{"Hunter-22"}}
	if h := tg.notSysadmin(); h.fix != "run ALTER SERVER ROLE sysadmin ADD MEMBER [ops]]team]" {
		t.Errorf("sysadmin fix %q", h.fix)
	}
	h, err := tg.unhealthyFor(context.Background(), &mssql.Error{Number: 18456, Message: "Login failed for user 'ops]team'."}, time.Second)
	if err != nil || !strings.HasPrefix(h.reason, "login failed for user 'ops]team'") || h.healthy {
		t.Errorf("login failure verdict %+v, %v", h, err)
	}
	h, _ = tg.unhealthyFor(context.Background(), errors.New("dial tcp: password Hunter-22 refused"), time.Second)
	if strings.Contains(h.reason, "Hunter-22") || !strings.HasPrefix(h.reason, "cannot connect to db1:1433") {
		t.Errorf("network verdict %+v", h)
	}
	h, _ = tg.unhealthyFor(context.Background(), context.DeadlineExceeded, 5*time.Second)
	if h.reason != "no answer from db1:1433 within 5s" {
		t.Errorf("timeout verdict %+v", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tg.unhealthyFor(ctx, errors.New("broken"), time.Second); err == nil {
		t.Error("a failure after the discovery's context ended gave a verdict; want an error")
	}
}

// TestQueryFailedVerdict checks that a query failing on a working
// connection is not reported as a connection problem, and that a
// listing with unreadable databases names them.
func TestQueryFailedVerdict(t *testing.T) {
	tg := target{login: "sa", address: "db1:1433", secrets: []string{"Hunter-22"}}
	h := tg.queryFailed("listing the databases", fmt.Errorf("list databases: %w", errors.New("column name too long, Hunter-22")))
	if h.healthy || !strings.HasPrefix(h.reason, "connected to db1:1433, but listing the databases failed") ||
		strings.Contains(h.reason, "cannot connect") || strings.Contains(h.reason, "Hunter-22") || strings.Contains(h.fix, "check the address") {
		t.Errorf("query failure verdict %+v; want connected, the step named, no secret, no address advice", h)
	}
	h = problems([]mssql.Database{{Name: "ok"}, {Name: "bad]one", Problem: "its files do not read: boom"}})
	if !h.healthy || !strings.Contains(h.reason, "1 of 2 databases") || !strings.Contains(h.reason, "[bad]]one]: its files do not read: boom") {
		t.Errorf("problems verdict %+v; want healthy, naming [bad]]one] and why", h)
	}
	if h := problems([]mssql.Database{{Name: "ok"}}); !h.healthy || h.reason != "" {
		t.Errorf("verdict without problems %+v; want healthy without reason", h)
	}
}
