package alert_test

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

// hook is a real HTTP endpoint on loopback that records the JSON bodies
// posted to it. Its answer is 200 unless fail says otherwise.
type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	// fail, when set, answers a request with a status other than 200
	// (before it is recorded) when it returns one.
	fail func(n int) int
	hits int
}

func newHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.hits++
		if h.fail != nil {
			if code := h.fail(h.hits); code != 0 && code != http.StatusOK {
				w.WriteHeader(code)
				return
			}
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.bodies = append(h.bodies, m)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

func (h *hook) channel(name, format string) *alert.Webhook {
	return &alert.Webhook{ChannelName: name, URL: h.srv.URL + "/hook/secret-token", Format: format}
}

// mailbox is a real SMTP server (go-smtp) on loopback, with TLS from a
// CA of the test's, that takes mail from one user and records it.
type mailbox struct {
	addr     *net.TCPAddr
	ca       *tlsca.CA
	mu       sync.Mutex
	messages []received
}

// received is one message as the server took it.
type received struct {
	From string
	To   []string
	Msg  *mail.Message
	Body string
	TLS  bool
}

const (
	mailUser     = "coffer"
	mailPassword = "s3cret-pass"
)

// newMailbox starts the server: implicit TLS when implicit, else plain
// SMTP offering STARTTLS unless noTLS.
func newMailbox(t *testing.T, implicit, noTLS bool) *mailbox {
	t.Helper()
	ca, err := tlsca.New("test mail CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{ca: ca}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{mb: mb, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.ErrorLog = testLogger{t}
	if !noTLS {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		l = tls.NewListener(l, s.TLSConfig)
	}
	mb.addr = l.Addr().(*net.TCPAddr)
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

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtp server: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtp server:"}, v...)...) }

// server is how the alerter reaches the mailbox.
func (mb *mailbox) server(mode string) alert.SMTP {
	return alert.SMTP{Host: "127.0.0.1", Port: mb.addr.Port, TLS: mode, Username: mailUser, Password: mailPassword,
		From: "coffer <coffer@example.com>", TLSConfig: &tls.Config{RootCAs: mb.ca.Pool()}, Timeout: 10 * time.Second}
}

func (mb *mailbox) got() []received {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]received(nil), mb.messages...)
}

// session takes one message, only from a signed-in user over TLS.
type session struct {
	mb     *mailbox
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != mailUser || pass != mailPassword {
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
	s.mb.messages = append(s.mb.messages, received{From: s.from, To: s.to, Msg: m, Body: string(body), TLS: isTLS})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
