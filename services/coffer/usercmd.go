package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/services/gateway"
)

// userFlags registers the flags of coffer user and returns what it runs.
func (c *cli) userFlags(ctx context.Context, fs *flag.FlagSet, stdin io.Reader) func(pos []string) error {
	role := fs.String("role", "", "with add: viewer, operator or admin")
	pwStdin := fs.Bool("password-stdin", false, "with add: read the user's password (for the dashboard) from the first line of standard input")
	token := fs.Bool("with-token", false, "with add: also make an API token for the user, printed once (the default without --password-stdin)")
	return func(pos []string) error {
		if len(pos) == 0 {
			return errors.New("usage: coffer user add NAME --role viewer|operator|admin [--password-stdin] [--with-token] | list | delete NAME | token NAME | revoke NAME TOKEN-ID")
		}
		switch pos[0] {
		case "list":
			return c.userList(ctx)
		case "add":
			if len(pos) != 2 || *role == "" {
				return errors.New("usage: coffer user add NAME --role viewer|operator|admin [--password-stdin] [--with-token]")
			}
			req := gateway.AddUser{Name: pos[1], Role: *role, Token: *token || !*pwStdin}
			if *pwStdin {
				pw, err := bufio.NewReader(stdin).ReadString('\n')
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
		case "delete":
			if len(pos) != 2 {
				return errors.New("usage: coffer user delete NAME")
			}
			if err := c.api.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(pos[1]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "user %s deleted, and every token of theirs\n", pos[1])
			return nil
		case "revoke":
			if len(pos) != 3 {
				return errors.New("usage: coffer user revoke NAME TOKEN-ID (coffer user list shows the ids)")
			}
			if err := c.api.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(pos[1])+"/tokens/"+url.PathEscape(pos[2]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "token %s of %s revoked\n", pos[2], pos[1])
			return nil
		case "token":
			if len(pos) != 2 {
				return errors.New("usage: coffer user token NAME")
			}
			var out gateway.NewToken
			if err := c.api.do(ctx, http.MethodPost, "/api/v1/users/"+url.PathEscape(pos[1])+"/tokens", nil, &out); err != nil {
				return err
			}
			return c.printToken(out, "has a new API token")
		}
		return fmt.Errorf("unknown user command %q", pos[0])
	}
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

// auditFlags registers the flags of coffer audit and returns what it runs.
func (c *cli) auditFlags(ctx context.Context, fs *flag.FlagSet) func(pos []string) error {
	since := fs.Duration("since", 7*24*time.Hour, "how far back to look")
	who := fs.String("user", "", "only this user's requests")
	limit := fs.Int("limit", 100, "at most this many entries, newest first")
	return func(pos []string) error {
		if len(pos) > 0 {
			return errors.New("usage: coffer audit [--since 24h] [--user NAME] [--limit N]")
		}
		q := url.Values{"since": {time.Now().Add(-*since).UTC().Format(time.RFC3339)}, "limit": {strconv.Itoa(*limit)}}
		if *who != "" {
			q.Set("user", *who)
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
}
