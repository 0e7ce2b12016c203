package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Notification is what a channel sends: an alert opened or resolved.
type Notification struct {
	// ID names the notification (NotificationID): the same one sent twice
	// carries the same ID, which mail uses as its Message-ID.
	ID string
	// Key is the alert's key.
	Key string
	// State is Opened or Resolved.
	State    string
	Rule     Rule
	Instance string
	Database string
	// Vault is the vault of a vault_check_failed alert.
	Vault    string
	Summary  string
	Detail   string
	OpenedAt time.Time
	// ResolvedAt is zero for an opening.
	ResolvedAt time.Time
}

// NotificationOf is the notification st has pending.
func NotificationOf(key string, st *cofferv1.AlertState) Notification {
	n := Notification{ID: NotificationID(st), Key: key, State: st.GetPending(), Rule: Rule(st.GetRule()),
		Instance: st.GetInstance(), Database: st.GetDatabase(), Vault: st.GetVault(), Summary: st.GetSummary(), Detail: st.GetDetail(),
		OpenedAt: st.GetOpenedAt().AsTime()}
	if st.GetPending() == Resolved {
		n.ResolvedAt = st.GetResolvedAt().AsTime()
	}
	return n
}

// Title is the notification's one line: "ALERT: …" or "RESOLVED: …".
func (n Notification) Title() string {
	if n.State == Resolved {
		return "RESOLVED: " + n.Summary
	}
	return "ALERT: " + n.Summary
}

// Text is the notification's body as plain text.
func (n Notification) Text() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n\nrule: %s\n", n.Title(), n.Rule)
	for _, f := range n.subject() {
		fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(f[0]), f[1])
	}
	fmt.Fprintf(&b, "opened: %s\n", n.OpenedAt.UTC().Format(time.RFC3339))
	if n.State == Resolved {
		fmt.Fprintf(&b, "resolved: %s\n", n.ResolvedAt.UTC().Format(time.RFC3339))
	}
	if n.Detail != "" {
		fmt.Fprintf(&b, "\n%s\n", n.Detail)
	}
	return b.String()
}

// subject is what the alert is about, as titled facts: its instance and
// database, or its vault.
func (n Notification) subject() [][2]string {
	var out [][2]string
	if n.Instance != "" || n.Vault == "" {
		out = append(out, [2]string{"Instance", n.Instance})
	}
	if n.Database != "" {
		out = append(out, [2]string{"Database", n.Database})
	}
	if n.Vault != "" {
		out = append(out, [2]string{"Vault", n.Vault})
	}
	return out
}

// Channel sends notifications somewhere. Send returns an error marked with
// backoff.Permanent when trying again cannot help (a webhook that refuses
// the request).
type Channel interface {
	// Name names the channel in the alert's record and in logs; it never
	// holds a secret (a webhook's URL does).
	Name() string
	Send(ctx context.Context, n Notification) error
}

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
	FormatTeams = "teams"
	FormatEmail = "email"
)

// Webhook posts notifications to a URL, as generic JSON (FormatJSON), as a
// Slack incoming webhook reads them (FormatSlack) or as a Teams workflow
// webhook reads them, an Adaptive Card (FormatTeams).
type Webhook struct {
	// ChannelName names the channel (its URL may hold a token, so it
	// never names it).
	ChannelName string
	URL         string
	Format      string
	// Client sends the requests. Default: one with a 30s timeout.
	Client *http.Client
}

var _ Channel = (*Webhook)(nil)

// Name is ChannelName.
func (w *Webhook) Name() string { return w.ChannelName }

// Body is the JSON body of n in the webhook's format.
func (w *Webhook) Body(n Notification) ([]byte, error) {
	switch w.Format {
	case FormatJSON, "":
		return json.Marshal(jsonBody(n))
	case FormatSlack:
		return json.Marshal(slackBody(n))
	case FormatTeams:
		return json.Marshal(teamsBody(n))
	}
	return nil, fmt.Errorf("webhook format %q: want json, slack or teams", w.Format)
}

// Send posts n. A 4xx answer other than 408 and 429 is permanent.
func (w *Webhook) Send(ctx context.Context, n Notification) error {
	body, err := w.Body(n)
	if err != nil {
		return backoff.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		// the URL is not in the error: it may hold a token
		return backoff.Permanent(fmt.Errorf("webhook %s: malformed URL", w.ChannelName))
	}
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) { // it names the URL: keep only its cause
			err = uerr.Err
		}
		return fmt.Errorf("webhook %s: %w", w.ChannelName, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return backoff.Permanent(fmt.Errorf("webhook %s: %s: %s", w.ChannelName, resp.Status, bytes.TrimSpace(msg)))
	}
	return fmt.Errorf("webhook %s: %s: %s", w.ChannelName, resp.Status, bytes.TrimSpace(msg))
}

// JSONBody is the generic webhook body.
type JSONBody struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Rule       string     `json:"rule"`
	Instance   string     `json:"instance"`
	Database   string     `json:"database,omitempty"`
	Vault      string     `json:"vault,omitempty"`
	Title      string     `json:"title"`
	Summary    string     `json:"summary"`
	Detail     string     `json:"detail,omitempty"`
	OpenedAt   time.Time  `json:"opened_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
}

func jsonBody(n Notification) JSONBody {
	b := JSONBody{ID: n.ID, State: n.State, Rule: string(n.Rule), Instance: n.Instance, Database: n.Database,
		Vault: n.Vault, Title: n.Title(), Summary: n.Summary, Detail: n.Detail, OpenedAt: n.OpenedAt.UTC()}
	if n.State == Resolved {
		t := n.ResolvedAt.UTC()
		b.ResolvedAt = &t
	}
	return b
}

// slackBody is a Slack incoming webhook's message: text for
// notifications and clients without blocks, blocks for the rest.
func slackBody(n Notification) map[string]any {
	return map[string]any{
		"text": n.Title(),
		"blocks": []any{
			map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(n.Title(), 150)}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": slackEscape(n.Text())}},
		},
	}
}

// slackEscape escapes the three characters Slack's mrkdwn reads as
// markup.
func slackEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// teamsBody is a message with one Adaptive Card, as a Teams workflow's
// "when a webhook request is received" posts it to a channel.
func teamsBody(n Notification) map[string]any {
	color := "attention"
	if n.State == Resolved {
		color = "good"
	}
	facts := []any{map[string]any{"title": "Rule", "value": string(n.Rule)}}
	for _, f := range n.subject() {
		facts = append(facts, map[string]any{"title": f[0], "value": f[1]})
	}
	facts = append(facts, map[string]any{"title": "Opened", "value": n.OpenedAt.UTC().Format(time.RFC3339)})
	if n.State == Resolved {
		facts = append(facts, map[string]any{"title": "Resolved", "value": n.ResolvedAt.UTC().Format(time.RFC3339)})
	}
	body := []any{
		map[string]any{"type": "TextBlock", "text": n.Title(), "weight": "bolder", "size": "medium", "color": color, "wrap": true},
		map[string]any{"type": "FactSet", "facts": facts},
	}
	if n.Detail != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": n.Detail, "wrap": true})
	}
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard",
				"version": "1.4",
				"body":    body,
			},
		}},
	}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
