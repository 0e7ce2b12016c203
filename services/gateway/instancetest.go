package gateway

import (
	"context"
	"time"

	"github.com/cofferhq/coffer/pkg/mssql"
)

// instanceTestTimeout bounds an instance's connection test: a server that
// does not answer in it is reported unreachable.
const instanceTestTimeout = 15 * time.Second

// testInstance connects to the instance req names, from the gateway, and
// reports what it found; it registers nothing. Discovery checks a
// registered instance again, from where it runs, and more thoroughly.
func testInstance(ctx context.Context, c *mssql.Client, req AddInstance) Instance {
	ctx, cancel := context.WithTimeout(ctx, instanceTestTimeout)
	defer cancel()
	out := Instance{Name: req.Name, Mode: modeName(req.Mode)}
	info, err := c.ServerInfo(ctx)
	switch {
	case err != nil:
		out.Reason = "cannot connect and sign in: " + err.Error()
		out.Fix = "check the host and port (is the server listening, does a firewall stand between?), the login and its password, and the encryption settings of the connection string"
	case !info.Sysadmin:
		out.Reason = "the login is not sysadmin: coffer needs it to back up and restore"
		out.Fix = "ALTER SERVER ROLE sysadmin ADD MEMBER [the login], or give a connection string with another login"
	default:
		out.Healthy = true
	}
	out.ServerName, out.Version, out.Edition, out.Sysadmin = info.Name, info.Version, info.Edition, info.Sysadmin
	return out
}
