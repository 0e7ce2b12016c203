package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/services/gateway"
)

func (a *app) userCmd() *cobra.Command {
	add := &cobra.Command{
		Use:   "add NAME --role viewer|operator|admin",
		Short: "Add a user of the API and dashboard",
		Long: `Add a user of the API and the dashboard, with a role: viewer (reads),
operator (backs up and restores) or admin (also manages users, policies
and vaults). The user gets an API token, printed this once, unless
--password-stdin gives a password (for the dashboard) instead; --with-token
gives both. See docs/api.md.`,
		Example: `  coffer user add olga --role operator
  printf '%s\n' "$PW" | coffer user add ann --role viewer --password-stdin`,
		Args: nargs(1, 1),
	}
	role := add.Flags().String("role", "", "viewer, operator or admin")
	pwStdin := add.Flags().Bool("password-stdin", false, "read the user's password (for the dashboard) from the first line of standard input")
	token := add.Flags().Bool("with-token", false, "also make an API token for the user, printed once (the default without --password-stdin)")
	add.MarkFlagRequired("role")
	a.client(add, func(ctx context.Context, c *cli, args []string) error {
		return c.userAdd(ctx, gateway.AddUser{Name: args[0], Role: *role, Token: *token || !*pwStdin}, *pwStdin)
	})
	return group("user", "Manage the users of the API and dashboard", "",
		add,
		a.leaf("list", "List the users, their roles and the ids of their tokens", nargs(0, 0), func(ctx context.Context, c *cli, _ []string) error { return c.userList(ctx) }),
		a.leaf("delete NAME", "Delete a user, and every token of theirs", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.userDelete(ctx, args[0]) }),
		a.leaf("token NAME", "Make a new API token for a user, printed once", nargs(1, 1), func(ctx context.Context, c *cli, args []string) error { return c.userToken(ctx, args[0]) }),
		a.leaf("revoke NAME TOKEN-ID", "Revoke one of a user's tokens (coffer user list shows the ids)", nargs(2, 2), func(ctx context.Context, c *cli, args []string) error { return c.userRevoke(ctx, args[0], args[1]) }),
	)
}

// userAdd adds a user; with pwStdin, its password is the first line of
// standard input.
func (c *cli) userAdd(ctx context.Context, req gateway.AddUser, pwStdin bool) error {
	if pwStdin {
		pw, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the password: %w", err)
		}
		req.Password = strings.TrimRight(pw, "\r\n")
	}
	var out gateway.NewToken
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/users", req, &out); err != nil {
		return err
	}
	return c.printToken(out, "created")
}

func (c *cli) userDelete(ctx context.Context, name string) error {
	if err := c.api.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "user %s deleted, and every token of theirs\n", name)
	return nil
}

func (c *cli) userRevoke(ctx context.Context, name, id string) error {
	if err := c.api.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(name)+"/tokens/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "token %s of %s revoked\n", id, name)
	return nil
}

func (c *cli) userToken(ctx context.Context, name string) error {
	var out gateway.NewToken
	if err := c.api.do(ctx, http.MethodPost, "/api/v1/users/"+url.PathEscape(name)+"/tokens", nil, &out); err != nil {
		return err
	}
	return c.printToken(out, "has a new API token")
}

// printToken prints a new user or token; the token is shown this once.
func (c *cli) printToken(t gateway.NewToken, what string) error {
	if c.json {
		return c.printJSON(t)
	}
	fmt.Fprintf(c.stdout, "user %s (%s) %s\n", t.User, t.Role, what)
	if t.Token != "" {
		fmt.Fprintf(c.stdout, "API token %s, shown this once (use it as COFFER_API_TOKEN):\n%s\n", t.ID, t.Token)
	}
	return nil
}

// get reads path into out, and prints it when --json asks: done is then
// true, and the caller prints no table.
func (c *cli) get(ctx context.Context, path string, out any) (done bool, err error) {
	if err := c.api.do(ctx, http.MethodGet, path, nil, out); err != nil {
		return true, err
	}
	if c.json {
		return true, c.printJSON(out)
	}
	return false, nil
}

func (c *cli) userList(ctx context.Context) error {
	var out []gateway.User
	if done, err := c.get(ctx, "/api/v1/users", &out); done {
		return err
	}
	var rows [][]string
	for _, u := range out {
		ids := make([]string, len(u.Tokens))
		for i, t := range u.Tokens {
			ids[i] = t.ID
		}
		rows = append(rows, []string{u.Name, u.Role, map[bool]string{true: "yes", false: "no"}[u.Password], strings.Join(ids, ",")})
	}
	c.table("USER\tROLE\tPASSWORD\tTOKENS", rows)
	return nil
}

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "audit",
		Short:   "Show who changed what, when, from where, and the outcome",
		Example: "  coffer audit --since 24h --user olga",
		Args:    nargs(0, 0),
	}
	since := cmd.Flags().Duration("since", 7*24*time.Hour, "how far back to look")
	who := cmd.Flags().String("user", "", "only this user's requests")
	limit := cmd.Flags().Int("limit", 100, "at most this many entries, newest first")
	return a.client(cmd, func(ctx context.Context, c *cli, _ []string) error { return c.audit(ctx, *since, *who, *limit) })
}

// audit prints the audit log's entries of the last since, newest first.
func (c *cli) audit(ctx context.Context, since time.Duration, who string, limit int) error {
	q := url.Values{"since": {time.Now().Add(-since).UTC().Format(time.RFC3339)}, "limit": {strconv.Itoa(limit)}}
	if who != "" {
		q.Set("user", who)
	}
	var out []gateway.AuditEntry
	if done, err := c.get(ctx, "/api/v1/audit?"+q.Encode(), &out); done {
		return err
	}
	var rows [][]string
	for _, a := range out {
		t := a.Time
		rows = append(rows, []string{fmtTime(&t), show(a.User), a.Remote, a.Method + " " + a.Path, strconv.Itoa(a.Status) + " " + a.Outcome, a.Detail})
	}
	c.table("TIME\tUSER\tFROM\tREQUEST\tOUTCOME\tDETAIL", rows)
	return nil
}
