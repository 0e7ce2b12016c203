package alerter

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/daemon"
)

// Name is the service's name: its durable consumers' prefix and the
// service its poison reports name.
const Name = "alerter"

// PasswordEnv holds the SMTP password: it is read from the environment
// only, never from a flag (which `ps` would show), and never logged.
const PasswordEnv = "COFFER_ALERT_SMTP_PASSWORD"

// Declaration declares the alerter once, for cmd/alerter and `coffer up`.
var Declaration = daemon.Service{Name: Name, Register: register}

// flags are the alerter's settings as the flags give them.
type flags struct {
	webhooks, slack, teams string
	smtp                   alert.SMTP
	caFile                 string
	mailTo                 string
	interval, maxAge       time.Duration
}

func register(f *daemon.Flags) daemon.Settings {
	s := &daemon.Config[flags]{Check: check, New: build}
	c := &s.Value
	// webhook URLs often carry their token: set from the environment they
	// are not shown by -help
	f.Secret(&c.webhooks, "alert-webhook", "COFFER_ALERT_WEBHOOK", "webhook URLs, comma-separated, that receive alerts as generic JSON")
	f.Secret(&c.slack, "alert-slack-webhook", "COFFER_ALERT_SLACK_WEBHOOK", "Slack incoming-webhook URLs, comma-separated")
	f.Secret(&c.teams, "alert-teams-webhook", "COFFER_ALERT_TEAMS_WEBHOOK", "Teams workflow webhook URLs, comma-separated (Adaptive Cards)")
	f.String(&c.smtp.Host, "alert-smtp-host", "COFFER_ALERT_SMTP_HOST", "", "SMTP server that mails alerts (none: no mail)")
	f.Int(&c.smtp.Port, "alert-smtp-port", "COFFER_ALERT_SMTP_PORT", 587, "SMTP server's port")
	f.String(&c.smtp.TLS, "alert-smtp-tls", "COFFER_ALERT_SMTP_TLS", alert.StartTLS, "how the SMTP connection is secured: starttls or tls (implicit, port 465); mail never goes in the clear")
	f.String(&c.smtp.Username, "alert-smtp-user", "COFFER_ALERT_SMTP_USER", "", "user signing in to the SMTP server; its password is read from "+PasswordEnv+" only")
	f.String(&c.smtp.From, "alert-smtp-from", "COFFER_ALERT_SMTP_FROM", "", "sender address of alert mail")
	f.String(&c.mailTo, "alert-mail-to", "COFFER_ALERT_MAIL_TO", "", "addresses, comma-separated, that receive alert mail")
	f.String(&c.caFile, "alert-smtp-ca-file", "COFFER_ALERT_SMTP_CA_FILE", "", "PEM file of the CA that signs the SMTP server's certificate (default: the system's roots)")
	f.Duration(&c.interval, "alert-interval", "COFFER_ALERT_INTERVAL", time.Minute, "how often the RPO rule is evaluated and unsent alerts sent again")
	f.Duration(&c.maxAge, "alert-max-event-age", "COFFER_ALERT_MAX_EVENT_AGE", time.Hour, "events older than this open alerts without sending them (a new alerter reading a week of events)")
	c.smtp.Password = f.Getenv(PasswordEnv)
	return s
}

// list splits a comma-separated setting.
func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// check validates the settings the flags set, naming the flags and never
// a URL or the password.
func check(c flags) error {
	var errs []error
	for _, w := range []struct{ flag, urls string }{{"--alert-webhook", c.webhooks}, {"--alert-slack-webhook", c.slack}, {"--alert-teams-webhook", c.teams}} {
		for i, u := range list(w.urls) {
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				errs = append(errs, fmt.Errorf("%s: URL %d is not an http(s) URL", w.flag, i+1))
			}
		}
	}
	to := list(c.mailTo)
	for _, a := range to {
		if _, err := mail.ParseAddress(a); err != nil {
			errs = append(errs, fmt.Errorf("--alert-mail-to %q: %w", a, err))
		}
	}
	switch {
	case c.smtp.Host != "":
		if err := c.smtp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--alert-smtp-*: %w", err))
		}
	case len(to) > 0:
		errs = append(errs, errors.New("--alert-mail-to needs --alert-smtp-host"))
	case c.smtp.Password != "" || c.smtp.Username != "" || c.smtp.From != "":
		errs = append(errs, errors.New("SMTP settings without --alert-smtp-host"))
	}
	if c.interval <= 0 {
		errs = append(errs, fmt.Errorf("--alert-interval %v: want a positive duration", c.interval))
	}
	if c.maxAge <= 0 {
		errs = append(errs, fmt.Errorf("--alert-max-event-age %v: want a positive duration", c.maxAge))
	}
	return errors.Join(errs...)
}

// channelName names a webhook by its kind and a digest of its URL, which
// stays the same whatever order the URLs are given in and shows nothing
// of a token the URL holds.
func channelName(kind, u string) string {
	sum := sha256.Sum256([]byte(u))
	return kind + "-" + hex.EncodeToString(sum[:4])
}

// Channels are the channels the flags name.
func (c flags) channels() []alert.Channel {
	var out []alert.Channel
	for _, w := range []struct{ format, urls string }{{alert.FormatJSON, c.webhooks}, {alert.FormatSlack, c.slack}, {alert.FormatTeams, c.teams}} {
		for _, u := range list(w.urls) {
			out = append(out, &alert.Webhook{ChannelName: channelName(w.format, u), URL: u, Format: w.format})
		}
	}
	if to := list(c.mailTo); len(to) > 0 {
		out = append(out, &alert.Mail{ChannelName: "mail", Server: c.smtp, To: to})
	}
	return out
}

func build(_ context.Context, d daemon.Deps, c flags) (daemon.Runner, error) {
	cfg := Config{Config: alert.Config{MaxEventAge: c.maxAge, Logger: d.Logger}, Interval: c.interval}
	if c.smtp.Host != "" {
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("--alert-smtp-ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--alert-smtp-ca-file %s: no PEM certificate", c.caFile)
			}
			c.smtp.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		cfg.SMTP = &c.smtp
	}
	cfg.Channels = c.channels()
	return New(d.Bus, d.Catalog, cfg)
}
