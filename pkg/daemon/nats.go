package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/natsauth"
)

// NATSOptions are the options of service's NATS connection, read from the
// environment:
//
//	COFFER_NATS_NKEY_FILE      the service's nkey seed (`coffer nats config` writes one per service)
//	COFFER_NATS_CREDS          a credentials file (JWT and seed), for an operator-managed NATS
//	COFFER_NATS_USER           a user name, with COFFER_NATS_PASSWORD or COFFER_NATS_PASSWORD_FILE
//	COFFER_NATS_CA_FILE        the CA the server's certificate must chain to (TLS on)
//	COFFER_NATS_CERT_FILE      a client certificate, with COFFER_NATS_KEY_FILE, for a server that verifies clients
//
// At most one way to authenticate may be set; none connects without
// credentials (the embedded server, a development NATS). Replies come to
// the service's own inbox prefix (natsauth.InboxPrefix), the only one its
// user may subscribe to. Asynchronous errors (a permissions violation
// above all: a publish the server refused is reported only this way) are
// logged to logger.
func NATSOptions(service string, getenv func(string) string, logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("coffer-" + service),
		nats.MaxReconnects(-1),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(service)),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			logger.Error("nats error", attrs...)
		}),
	}
	var errs []error
	var auth []string
	if f := getenv("COFFER_NATS_NKEY_FILE"); f != "" {
		auth = append(auth, "COFFER_NATS_NKEY_FILE")
		o, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("COFFER_NATS_NKEY_FILE: %w", err))
		}
		opts = append(opts, o)
	}
	if f := getenv("COFFER_NATS_CREDS"); f != "" {
		auth = append(auth, "COFFER_NATS_CREDS")
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("COFFER_NATS_CREDS: %w", err))
		}
		opts = append(opts, nats.UserCredentials(f))
	}
	if u := getenv("COFFER_NATS_USER"); u != "" {
		auth = append(auth, "COFFER_NATS_USER")
		pw := getenv("COFFER_NATS_PASSWORD")
		if f := getenv("COFFER_NATS_PASSWORD_FILE"); f != "" {
			if pw != "" {
				errs = append(errs, errors.New("both COFFER_NATS_PASSWORD and COFFER_NATS_PASSWORD_FILE are set"))
			}
			b, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("COFFER_NATS_PASSWORD_FILE: %w", err))
			}
			pw = strings.TrimSpace(string(b))
		}
		opts = append(opts, nats.UserInfo(u, pw))
	} else if getenv("COFFER_NATS_PASSWORD") != "" || getenv("COFFER_NATS_PASSWORD_FILE") != "" {
		errs = append(errs, errors.New("a NATS password without COFFER_NATS_USER"))
	}
	if len(auth) > 1 {
		errs = append(errs, fmt.Errorf("set one way to authenticate to NATS, not %s", strings.Join(auth, " and ")))
	}
	if f := getenv("COFFER_NATS_CA_FILE"); f != "" {
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("COFFER_NATS_CA_FILE: %w", err))
		}
		opts = append(opts, nats.RootCAs(f))
	}
	cert, key := getenv("COFFER_NATS_CERT_FILE"), getenv("COFFER_NATS_KEY_FILE")
	switch {
	case cert != "" && key != "":
		opts = append(opts, nats.ClientCert(cert, key))
	case cert != "" || key != "":
		errs = append(errs, errors.New("set both COFFER_NATS_CERT_FILE and COFFER_NATS_KEY_FILE, or neither"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return opts, nil
}

// ConnectNATS connects to the NATS server or cluster at url as name
// ("coffer-" and the service, or "coffer-up"), reconnecting for as long
// as the process lives. Extra options are applied after coffer's own.
// Every coffer process connects to an external NATS through here.
func ConnectNATS(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
