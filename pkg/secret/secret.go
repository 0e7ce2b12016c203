// Package secret seals small secrets, such as the connection strings of
// registered instances, with a key derived from the operator's master key,
// so that they are stored and sent only encrypted.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrOpen is returned when a sealed secret does not open: a different key
// sealed it, or it was altered.
var ErrOpen = errors.New("sealed secret does not open: wrong master key or damaged data")

const version = 1

// Sealer seals and opens secrets for one purpose.
type Sealer struct {
	aead cipher.AEAD
}

// New derives a sealing key for purpose (such as "instance-credentials")
// from a 32-byte master key.
func New(master []byte, purpose string) (*Sealer, error) {
	if len(master) != 32 {
		return nil, fmt.Errorf("master key must be 32 bytes, got %d", len(master))
	}
	key, err := hkdf.Key(sha256.New, master, nil, "coffer/secret/"+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to context (such as the instance name), so
// that a sealed value cannot be moved to another record.
func (s *Sealer) Seal(plaintext []byte, context string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce) // never returns an error since Go 1.24
	out := append([]byte{version}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte(context))
}

// Open decrypts what Seal returned for the same context.
func (s *Sealer) Open(sealed []byte, context string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
