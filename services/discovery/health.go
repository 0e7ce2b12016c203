package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/cofferhq/coffer/pkg/mssql"
)

// SQL Server error numbers discovery tells apart.
const (
	errLoginFailed      = 18456 // login failed (wrong user or password)
	errCannotOpenDB     = 4060  // the login's default or requested database cannot be opened
	errPermissionDenied = 262   // permission denied
	errServerPrincipal  = 916   // the login cannot access the database under its current context
)

// health is the verdict of one look at an instance.
type health struct {
	healthy bool
	reason  string
	fix     string
}

// target is what discovery knows of a connection string without keeping
// it: whom it logs in as, where it connects, and what must never be shown.
type target struct {
	login   string
	address string
	secrets []string
}

// parseTarget reads the login and address of dsn and collects every form
// of its password that could turn up in a driver's message. It fails
// without saying why, since the parser's message may quote the string.
func parseTarget(dsn string) (target, error) {
	t := target{secrets: []string{dsn}}
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		return t, errors.New("the connection string does not parse")
	}
	t.login = cfg.User
	host := cfg.Host
	if host == "" {
		host = "localhost"
	}
	switch {
	case cfg.Instance != "" && cfg.Port == 0:
		t.address = host + `\` + cfg.Instance
	case cfg.Port == 0:
		t.address = net.JoinHostPort(host, "1433")
	default:
		t.address = net.JoinHostPort(host, strconv.FormatUint(cfg.Port, 10))
	}
	for _, p := range []string{cfg.Password, cfg.ChangePassword} {
		if p == "" {
			continue
		}
		t.secrets = append(t.secrets, p, url.QueryEscape(p), url.PathEscape(p), url.UserPassword("", p).String())
	}
	return t, nil
}

// scrub removes every secret of the connection string from s.
func (t target) scrub(s string) string {
	for _, x := range t.secrets {
		if x != "" && x != ":" {
			s = strings.ReplaceAll(s, x, "***")
		}
	}
	return s
}

// loginName is the login for a message: quoted, or described when the
// connection string names none (integrated authentication).
func (t target) loginName() string {
	if t.login == "" {
		return "the login coffer connects with"
	}
	return "'" + t.login + "'"
}

// quoteIdent quotes a name as a T-SQL identifier, as the fix a DBA pastes
// needs it.
func quoteIdent(name string) string { return mssql.QuoteName(name) }

// unhealthyFor turns a failure to talk to an instance into a verdict. ctx
// is the discovery's own context: when it is done the failure says nothing
// about the instance, and errTransient tells the caller so.
func (t target) unhealthyFor(ctx context.Context, err error, timeout time.Duration) (health, error) {
	if ctx.Err() != nil {
		return health{}, fmt.Errorf("discovery interrupted: %w", ctx.Err())
	}
	// The driver's own words, without what pkg/mssql said it was doing.
	detail := err
	if u := errors.Unwrap(err); u != nil {
		detail = u
	}
	switch n := mssql.Number(err); n {
	case errLoginFailed:
		return health{
			reason: fmt.Sprintf("login failed for user %s", t.loginName()),
			fix: "check the user name and password in the connection string, and that the server allows SQL Server " +
				"authentication (mixed mode); then register the instance again",
		}, nil
	case errCannotOpenDB, errServerPrincipal:
		return health{
			reason: fmt.Sprintf("login %s cannot open its database: %s", t.loginName(), t.scrub(detail.Error())),
			fix:    "remove the database parameter from the connection string, or give the login a default database it can open (master)",
		}, nil
	case errPermissionDenied:
		return health{
			reason: fmt.Sprintf("login %s lacks a permission discovery needs: %s", t.loginName(), t.scrub(detail.Error())),
			fix:    fmt.Sprintf("run ALTER SERVER ROLE sysadmin ADD MEMBER %s", quoteIdent(t.login)),
		}, nil
	case 0:
		if errors.Is(err, context.DeadlineExceeded) {
			return health{
				reason: fmt.Sprintf("no answer from %s within %v", t.address, timeout),
				fix:    "check the address, that SQL Server listens on TCP there and that a firewall allows it",
			}, nil
		}
		return health{
			reason: fmt.Sprintf("cannot connect to %s: %s", t.address, t.scrub(detail.Error())),
			fix:    "check the address, that SQL Server listens on TCP and that a firewall allows it",
		}, nil
	default:
		return health{
			reason: fmt.Sprintf("SQL Server error %d while reading the server: %s", n, t.scrub(detail.Error())),
			fix:    fmt.Sprintf("look up error %d in SQL Server's error log at this time", n),
		}, nil
	}
}

// queryFailed is the verdict for a query that failed on a connection that
// works: the address is right, and saying otherwise sends the operator
// the wrong way.
func (t target) queryFailed(what string, err error) health {
	detail := err
	if u := errors.Unwrap(err); u != nil {
		detail = u
	}
	return health{
		reason: fmt.Sprintf("connected to %s, but %s failed: %s", t.address, what, t.scrub(detail.Error())),
		fix:    "the connection works; look for the cause in the message (and in SQL Server's error log at this time), and report it to coffer's maintainers if the server is healthy",
	}
}

// problems is the verdict of a listing that worked: healthy, with a
// reason naming the databases that could not be read in full, each with
// what failed. Those databases keep what discovery knew of them.
func problems(dbs []mssql.Database) health {
	var parts []string
	for _, d := range dbs {
		if d.Problem == "" {
			continue
		}
		name := d.Name
		if name == "" {
			name = fmt.Sprintf("database_id %d", d.ID)
		}
		parts = append(parts, fmt.Sprintf("%s: %s", quoteIdent(name), d.Problem))
	}
	if len(parts) == 0 {
		return health{healthy: true}
	}
	return health{
		healthy: true,
		reason:  fmt.Sprintf("%d of %d databases could not be read in full: %s", len(parts), len(dbs), strings.Join(parts, "; ")),
		fix:     "the other databases are discovered; check the named ones in SQL Server (DBCC CHECKDB, their files in sys.master_files)",
	}
}

// notSysadmin is the verdict for a login coffer can use to look but not to
// back up.
func (t target) notSysadmin() health {
	if t.login == "" {
		return health{
			reason: "the login coffer connects with is not a member of sysadmin; backups need it",
			fix:    "add the login to the sysadmin server role (ALTER SERVER ROLE sysadmin ADD MEMBER [login])",
		}
	}
	return health{
		reason: fmt.Sprintf("login '%s' is not a member of sysadmin; backups need it", t.login),
		fix:    fmt.Sprintf("run ALTER SERVER ROLE sysadmin ADD MEMBER %s", quoteIdent(t.login)),
	}
}
