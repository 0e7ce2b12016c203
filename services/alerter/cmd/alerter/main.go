// Command alerter runs coffer's alerter on its own, built from
// alerter.Declaration as `coffer up` runs it. Its own settings:
//
//	--alert-webhook URLS        COFFER_ALERT_WEBHOOK         webhooks receiving generic JSON, comma-separated
//	--alert-slack-webhook URLS  COFFER_ALERT_SLACK_WEBHOOK   Slack incoming webhooks
//	--alert-teams-webhook URLS  COFFER_ALERT_TEAMS_WEBHOOK   Teams workflow webhooks (Adaptive Cards)
//	--alert-smtp-host HOST      COFFER_ALERT_SMTP_HOST       SMTP server that mails alerts (none: no mail)
//	--alert-smtp-port N         COFFER_ALERT_SMTP_PORT       its port (default 587)
//	--alert-smtp-tls MODE       COFFER_ALERT_SMTP_TLS        starttls (default) or tls (implicit, port 465)
//	--alert-smtp-user USER      COFFER_ALERT_SMTP_USER       user signing in; the password from COFFER_ALERT_SMTP_PASSWORD only
//	--alert-smtp-from ADDR      COFFER_ALERT_SMTP_FROM       sender address
//	--alert-mail-to ADDRS       COFFER_ALERT_MAIL_TO         recipients, comma-separated
//	--alert-smtp-ca-file FILE   COFFER_ALERT_SMTP_CA_FILE    CA of the SMTP server's certificate (default: the system's roots)
//	--alert-interval D          COFFER_ALERT_INTERVAL        how often the RPO rule is evaluated (default 1m)
//	--alert-max-event-age D     COFFER_ALERT_MAX_EVENT_AGE   older events open alerts silently (default 1h)
//
// Every flag can be set by the environment variable named with it; a flag
// given on the command line wins. Besides its own, it reads the settings
// every coffer process reads (daemon.Common):
//
//	--nats URL              COFFER_NATS_URL       the NATS server or cluster (default nats://127.0.0.1:4222)
//	--replicas N            COFFER_NATS_REPLICAS  copies of each stream and bucket: 1 on a single server, 3 on a cluster
//
// and OTEL_* for traces. `-help` lists every flag with its default.
package main

import (
	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/services/alerter"
)

func main() {
	daemon.Main(alerter.Declaration)
}
