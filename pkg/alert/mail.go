package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// TLS modes of an SMTP server.
const (
	// StartTLS connects in the clear and upgrades with STARTTLS (port
	// 587); a server that does not offer it is refused.
	StartTLS = "starttls"
	// ImplicitTLS speaks TLS from the first byte (port 465).
	ImplicitTLS = "tls"
)

// SMTP is a mail server and how coffer signs in to it. Mail never leaves
// without TLS, and the password is sent only over it.
type SMTP struct {
	Host string
	Port int
	// TLS is StartTLS or ImplicitTLS.
	TLS string
	// Username and Password sign in (AUTH PLAIN); no username, no sign-in.
	Username string
	Password string
	// From is the sender's address.
	From string
	// TLSConfig verifies the server; nil verifies it against the system's
	// roots under Host. Its ServerName defaults to Host.
	TLSConfig *tls.Config
	// Timeout bounds one delivery. Default 30s.
	Timeout time.Duration
}

// Validate reports every problem with s at once.
func (s SMTP) Validate() error {
	var errs []error
	if s.Host == "" {
		errs = append(errs, errors.New("no SMTP host"))
	}
	if s.Port <= 0 || s.Port > 65535 {
		errs = append(errs, fmt.Errorf("SMTP port %d: want 1 to 65535", s.Port))
	}
	if s.TLS != StartTLS && s.TLS != ImplicitTLS {
		errs = append(errs, fmt.Errorf("SMTP TLS %q: want %s or %s", s.TLS, StartTLS, ImplicitTLS))
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		errs = append(errs, fmt.Errorf("SMTP sender %q: %w", s.From, err))
	}
	if s.Password != "" && s.Username == "" {
		errs = append(errs, errors.New("an SMTP password without a username"))
	}
	return errors.Join(errs...)
}

// Mail sends notifications by mail to To over an SMTP server.
type Mail struct {
	ChannelName string
	Server      SMTP
	To          []string
}

var _ Channel = (*Mail)(nil)

// Name is ChannelName.
func (m *Mail) Name() string { return m.ChannelName }

// Send mails n to every recipient in one message.
func (m *Mail) Send(ctx context.Context, n Notification) error {
	msg, err := m.Message(n, time.Now())
	if err != nil {
		return backoff.Permanent(err)
	}
	if err := m.send(ctx, msg); err != nil {
		return fmt.Errorf("mail %s: %w", m.ChannelName, err)
	}
	return nil
}

// Message is n as an RFC 5322 message.
func (m *Mail) Message(n Notification, now time.Time) ([]byte, error) {
	if len(m.To) == 0 {
		return nil, fmt.Errorf("mail %s: no recipient", m.ChannelName)
	}
	from, err := mail.ParseAddress(m.Server.From)
	if err != nil {
		return nil, fmt.Errorf("mail %s: sender: %w", m.ChannelName, err)
	}
	to := make([]string, len(m.To))
	for i, a := range m.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("mail %s: recipient %q: %w", m.ChannelName, a, err)
		}
		to[i] = addr.String()
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", from.String())
	header("To", strings.Join(to, ", "))
	// a database's name may hold any character, line breaks too: the
	// subject is encoded, never written as it is
	header("Subject", mime.QEncoding.Encode("utf-8", "[coffer] "+oneLine(n.Title())))
	header("Date", now.UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+strings.NewReplacer(":", ".", "/", ".").Replace(msgIDPart(n.Key+"."+n.ID))+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", `text/plain; charset="utf-8"`)
	header("Content-Transfer-Encoding", "8bit")
	header("X-Coffer-Alert", n.State)
	b.WriteString("\r\n")
	for _, line := range strings.Split(strings.TrimRight(n.Text(), "\n"), "\n") {
		b.WriteString(strings.TrimRight(line, "\r") + "\r\n") // net/smtp's DATA writer dot-stuffs
	}
	return b.Bytes(), nil
}

// oneLine folds line breaks into spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(s)), " ")
}

// msgIDPart keeps what a Message-ID's left part may hold.
func msgIDPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return r
		}
		return '_'
	}, s)
}

// send delivers msg over one connection.
func (m *Mail) send(ctx context.Context, msg []byte) error {
	s := m.Server
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tc := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		tc = s.TLSConfig.Clone()
		if tc.ServerName == "" {
			tc.ServerName = s.Host
		}
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	var conn net.Conn
	var err error
	if s.TLS == ImplicitTLS {
		conn, err = (&tls.Dialer{Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greet %s: %w", addr, err)
	}
	defer c.Close()
	if s.TLS == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return backoff.Permanent(fmt.Errorf("%s does not offer STARTTLS: mail is not sent in the clear", addr))
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("STARTTLS with %s: %w", addr, err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("sign in to %s as %s: %w", addr, s.Username, err)
		}
	}
	from, _ := mail.ParseAddress(s.From)
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, a := range m.To {
		to, _ := mail.ParseAddress(a)
		if err := c.Rcpt(to.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end message: %w", err)
	}
	return c.Quit()
}
