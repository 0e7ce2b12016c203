package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Role is what a user may do. Each role may do everything the roles
// below it may.
type Role int

const (
	// RolePublic is no role: a caller not signed in, who may call only
	// the public routes (health, sign-in, the OpenAPI document).
	RolePublic Role = iota
	// RoleViewer reads everything but the users and the audit log.
	RoleViewer
	// RoleOperator also backs up, protects, verifies, checks instances
	// and restores to a new name.
	RoleOperator
	// RoleAdmin may do everything: overwrite restores, delete recovery
	// points, change policies, instances and users, read the audit log.
	RoleAdmin
)

var roleNames = []string{"public", "viewer", "operator", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return "role(" + strconv.Itoa(int(r)) + ")"
	}
	return roleNames[r]
}

// ParseRole reads viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames[1:] {
		if s == n {
			return Role(i + 1), nil
		}
	}
	return RolePublic, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// Principal is who makes a request.
type Principal struct {
	// Name is the user's name, "api-token" for the configured API token,
	// "anonymous" for anyone when the gateway runs open (no users, no
	// token, loopback), "" for a caller not signed in.
	Name string
	Role Role
	// Via is how the caller was authenticated: token, session,
	// api-token, open, or none.
	Via string
	// refusal says why a caller is not signed in.
	refusal string
	// csrfMissing is set on a session without its CSRF header.
	csrfMissing bool
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principal is who makes the request, as guard found.
func principal(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

const (
	// tokenPrefix starts every personal API token, so that a token is
	// recognised in a log or a leaked file.
	tokenPrefix = "coffer_"
	// sessionCookie holds a signed-in dashboard's session.
	sessionCookie = "coffer_session"
	// csrfHeader must carry, on every change made with a session cookie,
	// the csrf value the sign-in answered.
	csrfHeader = "X-Coffer-CSRF"
	// SessionLifetime is how long a sign-in lasts.
	SessionLifetime = 12 * time.Hour
)

// authenticate finds who makes r: the configured API token, a personal
// token, or a session cookie. With no token configured and no user, on a
// gateway that listens on loopback alone, everyone is an admin
// (anonymous), as before users existed. An error is a failure to read the
// users bucket.
func (s *Service) authenticate(r *http.Request) (Principal, error) {
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		p, err := s.tokenPrincipal(r.Context(), bearer)
		if err != nil || p.Role != RolePublic {
			return p, err
		}
		if open, err := s.open(r.Context()); err != nil || open {
			// a token the open gateway does not know: as before users, it
			// is not looked at
			return Principal{Name: "anonymous", Role: RoleAdmin, Via: "open"}, err
		}
		return p, nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		p, err := s.sessionPrincipal(r.Context(), c.Value)
		if err != nil || p.Role != RolePublic {
			if p.Role != RolePublic && !hmac.Equal([]byte(r.Header.Get(csrfHeader)), []byte(s.csrfFor(c.Value))) {
				p.csrfMissing = true
			}
			return p, err
		}
	}
	open, err := s.open(r.Context())
	if err != nil {
		return Principal{}, err
	}
	if open {
		return Principal{Name: "anonymous", Role: RoleAdmin, Via: "open"}, nil
	}
	why := "sign in: give a token as Authorization: Bearer TOKEN (coffer --token, COFFER_API_TOKEN), or a session cookie from POST /api/v1/login"
	if s.cfg.Token == "" && !s.loopback() {
		why += "; this gateway listens beyond loopback, so it serves no one until a user exists or an API token is configured"
	}
	return Principal{Via: "none", refusal: why}, nil
}

// tokenPrincipal finds the user of a bearer token; RolePublic with a
// refusal when no one has it.
func (s *Service) tokenPrincipal(ctx context.Context, token string) (Principal, error) {
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1 {
		return Principal{Name: "api-token", Role: RoleAdmin, Via: "api-token"}, nil
	}
	refused := Principal{Via: "token", refusal: "missing or wrong API token (Authorization: Bearer ...)"}
	if !strings.HasPrefix(token, tokenPrefix) {
		return refused, nil
	}
	var t cofferv1.APIToken
	if _, err := s.users().Get(ctx, tokenKey(token), &t); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return refused, nil
		}
		return refused, err
	}
	u, err := s.user(ctx, t.GetUser())
	if errors.Is(err, catalog.ErrNotFound) {
		return refused, nil // the user was deleted: its tokens with it
	}
	if err != nil {
		return refused, err
	}
	role, err := ParseRole(u.GetRole())
	if err != nil {
		return refused, nil
	}
	return Principal{Name: u.GetName(), Role: role, Via: "token"}, nil
}

func tokenKey(token string) string { return catalog.Key("token", tokenHash(token)) }

// tokenHash is the SHA-256 of a token, in hex: a token is 256 random bits,
// so a fast hash is enough to keep it unusable from the bucket.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// open reports whether the gateway lets anyone in as an admin: no API
// token is configured, no user was ever created, and it listens on
// loopback alone. Once users exist, one admin at least always does
// (deleteUser keeps the last one when no API token is configured), so a
// gateway that found users remembers it: no request asks again.
func (s *Service) open(ctx context.Context) (bool, error) {
	if s.cfg.Token != "" || !s.loopback() || s.closed.Load() {
		return false, nil
	}
	var first timestamppb.Timestamp
	_, err := s.users().Get(ctx, usersMarker, &first)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	s.closed.Store(true)
	return false, nil
}

// usersMarker is written, with the time, before the first user: its
// presence closes an open gateway, in one get rather than a listing.
var usersMarker = catalog.Key("meta", "users")

// loopback reports whether the gateway listens on loopback alone.
func (s *Service) loopback() bool { return Loopback(s.Addr()) }

// Loopback reports whether a listen address (host:port) is on loopback
// alone: localhost, 127.0.0.0/8 or ::1; not "" or 0.0.0.0, which are
// every address.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// A session is "NAME.EXPIRY.MAC" (NAME base64url): MAC, keyed by a key
// derived from the master key, signs the name, the expiry and a
// fingerprint of the user's password hash, so that a changed password or
// a deleted user ends every session. Nothing is stored: any gateway
// replica checks any session.
func (s *Service) session(u *cofferv1.User, expiry time.Time) string {
	body := base64.RawURLEncoding.EncodeToString([]byte(u.GetName())) + "." + strconv.FormatInt(expiry.Unix(), 10)
	return body + "." + s.mac("session", body, u.GetPasswordHash())
}

func (s *Service) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.sessionKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfFor is the CSRF value of a session: a page of another site cannot
// read it, so it cannot send it.
func (s *Service) csrfFor(session string) string { return s.mac("csrf", session) }

func (s *Service) sessionPrincipal(ctx context.Context, v string) (Principal, error) {
	refused := Principal{Via: "session", refusal: "the session has ended or is not valid: sign in again (POST /api/v1/login)"}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return refused, nil
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || err2 != nil || s.cfg.Now().After(time.Unix(exp, 0)) {
		return refused, nil
	}
	u, err := s.user(ctx, string(name))
	if errors.Is(err, catalog.ErrNotFound) {
		return refused, nil
	}
	if err != nil {
		return refused, err
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac("session", parts[0]+"."+parts[1], u.GetPasswordHash()))) {
		return refused, nil
	}
	role, err := ParseRole(u.GetRole())
	if err != nil {
		return refused, nil
	}
	return Principal{Name: u.GetName(), Role: role, Via: "session"}, nil
}

// Login signs a user in with a password.
type Login struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// Whoami is who the caller is; a sign-in answers it with the CSRF value
// to send as X-Coffer-CSRF on every change.
type Whoami struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Via  string `json:"via"`
	CSRF string `json:"csrf,omitempty"`
}

// login checks a password and sets the session cookie: HttpOnly,
// SameSite=Strict, Secure when served over TLS.
func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	var req Login
	if !readJSON(w, r, &req) {
		return
	}
	setAuditUser(r, req.Name)
	u, err := s.user(r.Context(), req.Name)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		s.unavailable(w, r, err)
		return
	}
	// one hash at a time or two: each takes 64 MiB, and anyone may ask
	select {
	case s.hashing <- struct{}{}:
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, "sign-in abandoned: %v", r.Context().Err())
		return
	}
	hash := dummyHash // an unknown user costs a check too: the time tells nothing
	if u != nil && u.GetPasswordHash() != "" {
		hash = u.GetPasswordHash()
	}
	ok := checkPassword(hash, req.Password) && u != nil && u.GetPasswordHash() != ""
	<-s.hashing
	if !ok {
		writeError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	role, err := ParseRole(u.GetRole())
	if err != nil {
		writeError(w, http.StatusForbidden, "user %q has no valid role: %v", u.GetName(), err)
		return
	}
	exp := s.cfg.Now().Add(SessionLifetime)
	v := s.session(u, exp)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", Expires: exp, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, Whoami{Name: u.GetName(), Role: role.String(), Via: "session", CSRF: s.csrfFor(v)})
}

// logout clears the session cookie. The session itself stays valid until
// it expires (nothing is stored to revoke): change the password to end
// every session at once.
func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	writeJSON(w, http.StatusOK, Whoami{Name: p.Name, Role: p.Role.String(), Via: p.Via})
}
