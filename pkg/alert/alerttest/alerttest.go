// Package alerttest runs the real endpoints alerts go to, on loopback,
// for tests: an HTTP server that records the JSON posted to it, and an
// SMTP server (go-smtp) with TLS from a CA of the test's that takes mail
// only from a signed-in user and records it.
package alerttest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cofferhq/coffer/pkg/alert"
	"github.com/cofferhq/coffer/pkg/tlsca"
)

// Hook is a real HTTP endpoint on loopback that records the JSON bodies
// posted to it.
type Hook struct {
	// URL is where to post; its path stands for a webhook's token.
	URL string

	mu     sync.Mutex
	bodies []map[string]any
	hits   int
	fail   func(n int) int
}

// NewHook starts a hook, closed when the test ends. fail, when not nil,
// is asked before the n-th request (from 1) is recorded: a status other
// than 0 or 200 is the answer and the request is not recorded. It may
// block.
func NewHook(t testing.TB, fail func(n int) int) *Hook {
	t.Helper()
	h := &Hook{fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.hits++
		n := h.hits
		h.mu.Unlock()
		if h.fail != nil {
			if code := h.fail(n); code != 0 && code != http.StatusOK {
				w.WriteHeader(code)
				return
			}
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, m)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/hook/secret-token"
	return h
}

// Got returns the bodies recorded, in order.
func (h *Hook) Got() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

// Hits is how many requests came, recorded or not.
func (h *Hook) Hits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits
}

// Channel is a webhook channel posting to h in format.
func (h *Hook) Channel(name, format string) *alert.Webhook {
	return &alert.Webhook{ChannelName: name, URL: h.URL, Format: format}
}

// Mailbox is a real SMTP server on loopback.
type Mailbox struct {
	// Port is the server's port on 127.0.0.1.
	Port int
	// CA signs the server's certificate.
	CA *tlsca.CA

	mu       sync.Mutex
	messages []Received
}

// Received is one message as the server took it.
type Received struct {
	From string
	To   []string
	Msg  *mail.Message
	Body string
	// TLS: the message came over TLS.
	TLS bool
}

// The only user the server signs in.
const (
	User     = "coffer"
	Password = "s3cret-pass"
)

// TLS modes of NewMailbox.
const (
	// Plain offers STARTTLS, and AUTH only once it is on.
	Plain = iota
	// Implicit speaks TLS from the first byte.
	Implicit
	// NoTLS offers no STARTTLS (and so no AUTH).
	NoTLS
)

// NewMailbox starts an SMTP server in mode, closed when the test ends.
func NewMailbox(t testing.TB, mode int) *Mailbox {
	t.Helper()
	ca, err := tlsca.New("test mail CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mb := &Mailbox{CA: ca}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{mb: mb, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.ErrorLog = testLogger{t}
	if mode != NoTLS {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if mode == Implicit {
		l = tls.NewListener(l, s.TLSConfig)
	}
	mb.Port = l.Addr().(*net.TCPAddr).Port
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("smtp server: %v", err)
		}
	})
	return mb
}

type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtp server: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtp server:"}, v...)...) }

// Server is how a client reaches the mailbox in tlsMode (alert.StartTLS
// or alert.ImplicitTLS), signed in as User.
func (mb *Mailbox) Server(tlsMode string) alert.SMTP {
	return alert.SMTP{Host: "127.0.0.1", Port: mb.Port, TLS: tlsMode, Username: User, Password: Password,
		From: "coffer <coffer@example.com>", TLSConfig: &tls.Config{RootCAs: mb.CA.Pool()}, Timeout: 10 * time.Second}
}

// Got returns the messages taken, in order.
func (mb *Mailbox) Got() []Received {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]Received(nil), mb.messages...)
}

// session takes one message, only from a signed-in user.
type session struct {
	mb     *Mailbox
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != User || pass != Password {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		return err
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	s.mb.messages = append(s.mb.messages, Received{From: s.from, To: s.to, Msg: m, Body: string(body), TLS: isTLS})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// Eventually polls cond until it holds, and fails the test, saying what
// it saw, when within passes first.
func Eventually(t testing.TB, within time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
