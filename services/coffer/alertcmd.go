package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/services/gateway"
)

// alertsCmd is `coffer alerts`: the recent alerts, and `alerts rules`,
// the rules and where alerts go, as the alerter published them.
func (a *app) alertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List recent alerts: open ones, then resolved ones and notices",
		Long: `List the alerts the alerter raised, newest change first: a failed job, a
broken chain, a database out of its RPO, a failed test restore or vault
check, an unhealthy instance. Each says whether it is open, and whether
its notification went out.`,
		Example: "  coffer alerts --open",
		Args:    nargs(0, 0),
	}
	open := cmd.Flags().Bool("open", false, "only the open alerts")
	limit := cmd.Flags().Int("limit", 100, "at most this many alerts")
	a.client(cmd, func(ctx context.Context, c *cli, _ []string) error { return c.alerts(ctx, *open, *limit) })
	cmd.AddCommand(a.leaf("rules", "List the alert rules and the channels alerts go to", nargs(0, 0),
		func(ctx context.Context, c *cli, _ []string) error { return c.alertRules(ctx) }))
	return cmd
}

// alerts prints the recent alerts.
func (c *cli) alerts(ctx context.Context, open bool, limit int) error {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if open {
		q.Set("open", "true")
	}
	var out []gateway.Alert
	if done, err := c.get(ctx, "/api/v1/alerts?"+q.Encode(), &out); done {
		return err
	}
	var rows [][]string
	for _, al := range out {
		state := "resolved"
		switch {
		case al.Notice:
			state = "notice"
		case al.Open:
			state = "OPEN"
		}
		if al.Pending != "" {
			state += " (" + al.Pending + " not yet sent)"
		}
		subject := show(al.Vault)
		if al.Database != "" || al.Instance != "" {
			subject = al.Instance + "/" + al.Database
		}
		opened := al.OpenedAt
		rows = append(rows, []string{state, al.Rule, subject, fmtTime(&opened), fmtTime(al.ResolvedAt), al.Summary})
	}
	c.table("STATE\tRULE\tSUBJECT\tOPENED\tRESOLVED\tSUMMARY", rows)
	return nil
}

// alertRules prints the rules and the channels.
func (c *cli) alertRules(ctx context.Context) error {
	var out gateway.AlertRules
	if done, err := c.get(ctx, "/api/v1/alerts/rules", &out); done {
		return err
	}
	if !out.Published {
		fmt.Fprintln(c.stdout, "no alerter has published its rules yet (is the alerter service running?)")
		return nil
	}
	var rows [][]string
	for _, r := range out.Rules {
		on := "on"
		if !r.Enabled {
			on = "off"
		}
		channels := strings.Join(r.Channels, ", ")
		if channels == "" {
			channels = "none (the alerter's --alert-webhook, --alert-mail-to)"
		}
		rows = append(rows, []string{r.Name, on, channels, r.Description})
	}
	c.table("RULE\tSTATE\tCHANNELS\tDESCRIPTION", rows)
	rows = nil
	for _, ch := range out.Channels {
		where := ch.Host
		if len(ch.To) > 0 {
			where += " to " + strings.Join(ch.To, ", ")
		}
		rows = append(rows, []string{ch.Name, ch.Kind, show(where), show(ch.Source), ch.Problem})
	}
	fmt.Fprintln(c.stdout)
	c.table("CHANNEL\tKIND\tWHERE\tFROM\tPROBLEM", rows)
	return nil
}
