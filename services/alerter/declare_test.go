package alerter

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/daemon"
)

// TestSettings: the channels come from the flags and the environment, the
// SMTP password from the environment only; a mistake is named without
// the URL or the password it is about.
func TestSettings(t *testing.T) {
	const token = "T000/B000/XXXXSECRET"
	env := map[string]string{
		"COFFER_ALERT_SLACK_WEBHOOK": "https://hooks.slack.example/services/" + token,
		"COFFER_ALERT_SMTP_HOST":     "smtp.example.com",
		"COFFER_ALERT_SMTP_USER":     "coffer",
		PasswordEnv:                  "hunter2",
		"COFFER_ALERT_SMTP_FROM":     "coffer@example.com",
		"COFFER_ALERT_MAIL_TO":       "dba@example.com, oncall@example.com",
	}
	getenv := func(k string) string { return env[k] }
	var help bytes.Buffer
	s, err := daemon.ParseStandalone(Declaration, []string{"--alert-webhook", "https://a.example/x,https://b.example/y", "--alert-smtp-tls", "tls", "--alert-smtp-port", "465"}, getenv, &help)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c := s.Service.Settings.(*daemon.Config[flags]).Value
	if c.smtp.Password != "hunter2" || c.smtp.TLS != alert.ImplicitTLS || c.smtp.Port != 465 {
		t.Errorf("smtp %+v; want the password from the environment, implicit TLS on 465", c.smtp)
	}
	var names []string
	for _, ch := range c.channels() {
		names = append(names, ch.Name())
		if strings.Contains(ch.Name(), token) {
			t.Errorf("channel name %q shows the webhook's token", ch.Name())
		}
	}
	if len(names) != 4 || !strings.HasPrefix(names[0], "json-") || !strings.HasPrefix(names[2], "slack-") || names[3] != "mail" {
		t.Errorf("channels %v; want two json webhooks, one slack, mail", names)
	}

	help.Reset()
	daemon.ParseStandalone(Declaration, []string{"-help"}, getenv, &help)
	for _, secret := range []string{token, "hunter2"} {
		if strings.Contains(help.String(), secret) {
			t.Errorf("-help shows %q", secret)
		}
	}
	if strings.Contains(help.String(), "-alert-smtp-password") {
		t.Errorf("-help lists a password flag; the password is read from %s only", PasswordEnv)
	}

	env["COFFER_ALERT_TEAMS_WEBHOOK"] = "ftp://" + token
	env["COFFER_ALERT_SMTP_TLS"] = "none"
	_, err = daemon.ParseStandalone(Declaration, nil, getenv, &bytes.Buffer{})
	if err == nil {
		t.Fatal("a teams webhook over ftp and SMTP without TLS were accepted")
	}
	for _, want := range []string{"--alert-teams-webhook: URL 1 is not an http(s) URL", `SMTP TLS "none"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q; want it to say %q", err, want)
		}
	}
	for _, secret := range []string{token, "hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows %q", err, secret)
		}
	}
	delete(env, "COFFER_ALERT_SMTP_HOST")
	delete(env, "COFFER_ALERT_TEAMS_WEBHOOK")
	delete(env, "COFFER_ALERT_SMTP_TLS")
	if _, err := daemon.ParseStandalone(Declaration, nil, getenv, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--alert-mail-to needs --alert-smtp-host") {
		t.Errorf("recipients without a server: %v", err)
	}
}
