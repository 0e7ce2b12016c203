package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/pkg/catalog"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// User is a user as the API shows it: never a password or a token.
type User struct {
	Name      string  `json:"name"`
	Role      string  `json:"role"`
	Password  bool    `json:"password"`
	Tokens    []Token `json:"tokens"`
	CreatedBy string  `json:"created_by,omitempty"`
}

// Token is a personal API token as listed: its id, never the token.
type Token struct {
	ID        string `json:"id"`
	CreatedBy string `json:"created_by,omitempty"`
}

// AddUser creates a user. With Password the user signs in to the
// dashboard; with Token the answer carries a new API token, shown once.
// One of them is needed.
type AddUser struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password,omitempty"`
	Token    bool   `json:"token,omitempty"`
}

// NewToken answers the creation of a user or a token: the token itself
// is in no other answer and stored nowhere.
type NewToken struct {
	User  string `json:"user"`
	Role  string `json:"role"`
	ID    string `json:"token_id,omitempty"`
	Token string `json:"token,omitempty"`
}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 12

// argon2id's cost, RFC 9106's second recommendation (64 MiB, 3 passes).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// hashPassword hashes a password with argon2id and a random salt, in the
// PHC string format, which records the cost so that it can change.
func hashPassword(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// dummyHash is checked against when a sign-in names no user or a user
// without a password, so that its answer takes as long as a wrong
// password's.
var dummyHash = "$argon2id$v=19$m=65536,t=3,p=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// checkPassword reports whether pw is the password hashed as phc.
func checkPassword(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// newToken makes a personal API token: 32 random bytes, hex, after
// tokenPrefix.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return tokenPrefix + hex.EncodeToString(b)
}

// tokenID names a token in listings: the start of its hash.
func tokenID(token string) string { return tokenHash(token)[:12] }

func validUserName(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case len(name) > 64:
		return errors.New("user name is longer than 64 characters")
	case name == "api-token" || name == "anonymous":
		return fmt.Errorf("user name %q is reserved", name)
	case strings.IndexFunc(name, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._@-", r)
	}) >= 0:
		return fmt.Errorf("user name %q: use letters, digits, '.', '_', '@' and '-'", name)
	}
	return nil
}

func (s *Service) users() *catalog.Bucket { return s.cat.Bucket(cofferv1.BucketUsers) }

func (s *Service) user(ctx context.Context, name string) (*cofferv1.User, error) {
	var u cofferv1.User
	if _, err := s.users().Get(ctx, catalog.Key("user", name), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// errStop stops a listing early.
var errStop = errors.New("stop")

// anyUser reports whether a user exists.
func (s *Service) anyUser(ctx context.Context) (bool, error) {
	found := false
	err := s.users().List(ctx, catalog.Key("user"), func() proto.Message { return &cofferv1.User{} },
		func(string, proto.Message) error { found = true; return errStop })
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

// CreateUser creates a user, with a password and, when token is set, a
// new API token, which it returns (it is stored only hashed). It fails
// with catalog.ErrExists when the user exists.
func (s *Service) CreateUser(ctx context.Context, name string, role Role, password string, token bool, by string) (NewToken, error) {
	if err := checkNewUser(name, role, password, token); err != nil {
		return NewToken{}, err
	}
	// users exist from now on: an open gateway closes (never the other way)
	if _, err := s.users().Create(ctx, usersMarker, timestamppb.New(s.cfg.Now())); err != nil && !errors.Is(err, catalog.ErrExists) {
		return NewToken{}, fmt.Errorf("create user %s: %w", name, err)
	}
	u := &cofferv1.User{Name: name, Role: role.String(), CreatedAt: timestamppb.New(s.cfg.Now()), CreatedBy: by}
	if password != "" {
		u.PasswordHash = hashPassword(password)
	}
	out := NewToken{User: name, Role: role.String()}
	if token {
		// the token first: a user whose record is written is usable at
		// once, and a token without its user is inert
		t, err := s.issueToken(ctx, name, by)
		if err != nil {
			return NewToken{}, err
		}
		out.ID, out.Token = tokenID(t), t
	}
	if _, err := s.users().Create(ctx, catalog.Key("user", name), u); err != nil {
		if out.Token != "" {
			s.users().Delete(ctx, tokenKey(out.Token))
		}
		return NewToken{}, fmt.Errorf("create user %s: %w", name, err)
	}
	return out, nil
}

// checkNewUser says what makes a new user unusable.
func checkNewUser(name string, role Role, password string, token bool) error {
	if err := validUserName(name); err != nil {
		return err
	}
	switch {
	case role == RolePublic || role > RoleAdmin:
		return fmt.Errorf("role %s: want viewer, operator or admin", role)
	case password == "" && !token:
		return errors.New("give the user a password, a token or both: with neither, no one could sign in as it")
	case password != "" && len([]rune(password)) < MinPasswordLength:
		return fmt.Errorf("the password is shorter than %d characters", MinPasswordLength)
	}
	return nil
}

func (s *Service) issueToken(ctx context.Context, user, by string) (string, error) {
	t := newToken()
	rec := &cofferv1.APIToken{Id: tokenID(t), Hash: tokenHash(t), User: user, CreatedAt: timestamppb.New(s.cfg.Now()), CreatedBy: by}
	if _, err := s.users().Create(ctx, tokenKey(t), rec); err != nil {
		return "", fmt.Errorf("store token of %s: %w", user, err)
	}
	return t, nil
}

func (s *Service) listUsers(w http.ResponseWriter, r *http.Request) {
	users, tokens, err := s.userRecords(r.Context())
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	out := []User{}
	for _, u := range users {
		out = append(out, User{Name: u.GetName(), Role: u.GetRole(), Password: u.GetPasswordHash() != "", CreatedBy: u.GetCreatedBy(), Tokens: []Token{}})
	}
	for i := range out {
		for _, t := range tokens[out[i].Name] {
			out[i].Tokens = append(out[i].Tokens, Token{ID: t.GetId(), CreatedBy: t.GetCreatedBy()})
		}
		sort.Slice(out[i].Tokens, func(a, b int) bool { return out[i].Tokens[a].ID < out[i].Tokens[b].ID })
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	writeJSON(w, http.StatusOK, out)
}

// userRecords are the stored users, and their tokens by user.
func (s *Service) userRecords(ctx context.Context) ([]*cofferv1.User, map[string][]*cofferv1.APIToken, error) {
	var users []*cofferv1.User
	err := s.users().List(ctx, catalog.Key("user"), func() proto.Message { return &cofferv1.User{} },
		func(_ string, m proto.Message) error {
			users = append(users, m.(*cofferv1.User))
			return nil
		})
	if err != nil {
		return nil, nil, err
	}
	tokens, err := s.tokens(ctx)
	return users, tokens, err
}

// tokens are the stored tokens, by user.
func (s *Service) tokens(ctx context.Context) (map[string][]*cofferv1.APIToken, error) {
	out := map[string][]*cofferv1.APIToken{}
	err := s.users().List(ctx, catalog.Key("token"), func() proto.Message { return &cofferv1.APIToken{} },
		func(_ string, m proto.Message) error {
			t := m.(*cofferv1.APIToken)
			out[t.GetUser()] = append(out[t.GetUser()], t)
			return nil
		})
	return out, err
}

func (s *Service) addUser(w http.ResponseWriter, r *http.Request) {
	var req AddUser
	if !readJSON(w, r, &req) {
		return
	}
	role, err := ParseRole(req.Role)
	if err == nil {
		err = checkNewUser(req.Name, role, req.Password, req.Token)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	out, err := s.CreateUser(r.Context(), req.Name, role, req.Password, req.Token, principal(r).Name)
	switch {
	case errors.Is(err, catalog.ErrExists):
		writeError(w, http.StatusConflict, "user %q exists (coffer user delete %s first, or coffer user token %s for a new token)", req.Name, req.Name, req.Name)
		return
	case err != nil:
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// namedUser reads the user called name, answering the request when
// there is none or the bucket cannot be read.
func (s *Service) namedUser(w http.ResponseWriter, r *http.Request, name string) (*cofferv1.User, bool) {
	u, err := s.user(r.Context(), name)
	if errors.Is(err, catalog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no user %q (coffer user list)", name)
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err)
		return nil, false
	}
	return u, true
}

// deleteUser deletes a user and every token of theirs. The last admin
// cannot be deleted: no one could add users again.
func (s *Service) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u, ok := s.namedUser(w, r, name)
	if !ok {
		return
	}
	users, tokens, err := s.userRecords(r.Context())
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	admins := 0
	for _, o := range users {
		if o.GetRole() == RoleAdmin.String() {
			admins++
		}
	}
	if u.GetRole() == RoleAdmin.String() && admins <= 1 && s.cfg.Token == "" {
		writeError(w, http.StatusConflict, "%s is the last admin: add another admin first", name)
		return
	}
	// the user first: its tokens are inert from then on
	if err := s.users().Delete(r.Context(), catalog.Key("user", name)); err != nil {
		s.unavailable(w, r, err)
		return
	}
	for _, t := range tokens[name] {
		if err := s.users().Delete(r.Context(), catalog.Key("token", t.GetHash())); err != nil {
			s.unavailable(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": name, "tokens_deleted": len(tokens[name])})
}

// addToken makes a new API token for a user.
func (s *Service) addToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u, ok := s.namedUser(w, r, name)
	if !ok {
		return
	}
	t, err := s.issueToken(r.Context(), name, principal(r).Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, NewToken{User: name, Role: u.GetRole(), ID: tokenID(t), Token: t})
}

// createFirstAdmin creates cfg.FirstAdmin with a new API token when no
// user exists yet, and prints the token once. Another replica doing the
// same at once is no error: one of them creates the admin.
func (s *Service) createFirstAdmin(ctx context.Context) error {
	if s.cfg.FirstAdmin == "" {
		return nil
	}
	any, err := s.anyUser(ctx)
	if err != nil || any {
		return err
	}
	t, err := s.CreateUser(ctx, s.cfg.FirstAdmin, RoleAdmin, "", true, "first start")
	if errors.Is(err, catalog.ErrExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gateway: first admin: %w", err)
	}
	s.cfg.Logger.Info("first admin created", "user", t.User, "token_id", t.ID)
	if s.cfg.FirstAdminOut != nil {
		fmt.Fprintf(s.cfg.FirstAdminOut, "First admin %q created. Its API token, shown this once:\n\n  %s\n\n"+
			"Use it as COFFER_API_TOKEN (or --token); coffer user add makes more users, coffer user token %s another token.\n",
			t.User, t.Token, t.User)
	}
	return nil
}

// deleteToken revokes one API token of a user, named by its id.
func (s *Service) deleteToken(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	tokens, err := s.tokens(r.Context())
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	for _, t := range tokens[name] {
		if t.GetId() == id {
			if err := s.users().Delete(r.Context(), catalog.Key("token", t.GetHash())); err != nil {
				s.unavailable(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"user": name, "revoked": id})
			return
		}
	}
	writeError(w, http.StatusNotFound, "user %q has no token %q (coffer user list)", name, id)
}
