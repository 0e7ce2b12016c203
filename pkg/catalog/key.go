package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Key joins parts into a bucket key. Each part is encoded so that the key
// uses only the characters JetStream allows ([-/_=.a-zA-Z0-9]) and each part
// is exactly one dot-separated token:
//
//   - letters, digits, '-', '_' and '/' stand for themselves;
//   - every other byte of the part's UTF-8 form, '=' and '.' included, is
//     written as '=' and two upper-case hex digits ("a.b" → "a=2Eb");
//   - an empty part is written as a lone "=".
//
// So Key("SQL01", "Sales DB") is "SQL01.Sales=20DB" and
// Key("SQL01", "日本") is "SQL01.=E6=97=A5=E6=9C=AC". [SplitKey] inverts it.
// Key with no parts returns "", which no bucket accepts.
func Key(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		encodePart(&b, p)
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

func encodePart(b *strings.Builder, p string) {
	if p == "" {
		b.WriteByte('=')
		return
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
}

func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '/'
}

// ErrBadKey is returned by [SplitKey] for a key [Key] cannot have produced.
var ErrBadKey = errors.New("malformed catalog key")

// SplitKey returns the parts [Key] joined. It fails with [ErrBadKey] on a
// key that Key cannot have produced.
func SplitKey(key string) ([]string, error) {
	if key == "" {
		return nil, fmt.Errorf("split key %q: empty: %w", key, ErrBadKey)
	}
	tokens := strings.Split(key, ".")
	parts := make([]string, 0, len(tokens))
	for _, tok := range tokens {
		p, err := decodePart(tok)
		if err != nil {
			return nil, fmt.Errorf("split key %q: %w", key, err)
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func decodePart(tok string) (string, error) {
	if tok == "=" {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("empty token: %w", ErrBadKey)
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case c == '=' && i+2 < len(tok) && isUpperHex(tok[i+1]) && isUpperHex(tok[i+2]):
			v := unhex(tok[i+1])<<4 | unhex(tok[i+2])
			if plain(v) {
				// Key never escapes a plain byte; accepting one would give
				// two spellings of the same key.
				return "", fmt.Errorf("needless escape %q: %w", tok[i:i+3], ErrBadKey)
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", fmt.Errorf("bad byte %q at %d in token %q: %w", c, i, tok, ErrBadKey)
		}
	}
	return b.String(), nil
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
