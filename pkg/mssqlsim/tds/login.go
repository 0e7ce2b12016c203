package tds

import (
	"encoding/binary"
	"fmt"
)

// PRELOGIN option tokens and encryption values.
const (
	preVersion    byte = 0
	preEncryption byte = 1
	preInstOpt    byte = 2
	preThreadID   byte = 3
	preMARS       byte = 4
	preTerminator byte = 0xFF

	encryptNotSup byte = 2
)

// TDS versions as sent in LOGIN7 (little-endian) and LOGINACK.
const (
	tdsVersion72 uint32 = 0x72090002
	tdsVersion74 uint32 = 0x74000004
)

// parsePrelogin returns the client's ENCRYPTION option, or encryptNotSup if
// it sent none.
func parsePrelogin(data []byte) (byte, error) {
	enc := encryptNotSup
	for i := 0; ; i += 5 {
		if i >= len(data) {
			return 0, fmt.Errorf("prelogin without terminator: %w", errMalformed)
		}
		if data[i] == preTerminator {
			return enc, nil
		}
		if i+5 > len(data) {
			return 0, fmt.Errorf("truncated prelogin option: %w", errMalformed)
		}
		off := int(binary.BigEndian.Uint16(data[i+1:]))
		n := int(binary.BigEndian.Uint16(data[i+3:]))
		if off+n > len(data) {
			return 0, fmt.Errorf("prelogin option %d past end: %w", data[i], errMalformed)
		}
		if data[i] == preEncryption && n >= 1 {
			enc = data[off]
		}
	}
}

// preloginResponse builds the server's PRELOGIN answer: no encryption,
// no MARS.
func preloginResponse(cfg *Config, spid uint16) []byte {
	version := []byte{cfg.VersionMajor, cfg.VersionMinor, byte(cfg.VersionBuild >> 8), byte(cfg.VersionBuild), 0, 0}
	threadID := binary.BigEndian.AppendUint32(nil, uint32(spid))
	opts := []struct {
		tok  byte
		data []byte
	}{
		{preVersion, version},
		{preEncryption, []byte{encryptNotSup}},
		{preInstOpt, []byte{0}},
		{preThreadID, threadID},
		{preMARS, []byte{0}},
	}
	off := 5*len(opts) + 1
	var head, body []byte
	for _, o := range opts {
		head = append(head, o.tok)
		head = binary.BigEndian.AppendUint16(head, uint16(off+len(body)))
		head = binary.BigEndian.AppendUint16(head, uint16(len(o.data)))
		body = append(body, o.data...)
	}
	head = append(head, preTerminator)
	return append(head, body...)
}

// login7 is what the server needs from a LOGIN7 message.
type login7 struct {
	Login
	tdsVersion uint32
	packetSize int
}

// LOGIN7 fixed-part offsets of the (offset, length) pairs.
const (
	l7HostName   = 36
	l7UserName   = 40
	l7Password   = 44
	l7AppName    = 48
	l7Database   = 68
	l7MinimumLen = 72
)

// parseLogin7 decodes a LOGIN7 message. The password is de-obfuscated.
func parseLogin7(data []byte) (login7, error) {
	var l login7
	if len(data) < l7MinimumLen {
		return l, fmt.Errorf("login7 of %d bytes: %w", len(data), errMalformed)
	}
	le := binary.LittleEndian
	l.tdsVersion = le.Uint32(data[4:])
	l.packetSize = int(le.Uint32(data[8:]))
	field := func(pos int) ([]byte, error) {
		off, n := int(le.Uint16(data[pos:])), 2*int(le.Uint16(data[pos+2:]))
		if off+n > len(data) {
			return nil, fmt.Errorf("login7 field at %d past end: %w", pos, errMalformed)
		}
		return data[off : off+n], nil
	}
	var raw [5][]byte
	for i, pos := range []int{l7HostName, l7UserName, l7Password, l7AppName, l7Database} {
		b, err := field(pos)
		if err != nil {
			return l, err
		}
		raw[i] = b
	}
	pw := make([]byte, len(raw[2]))
	for i, b := range raw[2] {
		b ^= 0xA5
		pw[i] = b<<4 | b>>4
	}
	l.HostName = decodeUCS2(raw[0])
	l.User = decodeUCS2(raw[1])
	l.Password = decodeUCS2(pw)
	l.AppName = decodeUCS2(raw[3])
	l.Database = decodeUCS2(raw[4])
	return l, nil
}

// negotiateVersion picks the TDS version for LOGINACK: the client's, at
// most 7.4. Versions before 7.2 (and TDS 8, which needs TLS) are refused.
func negotiateVersion(client uint32) (uint32, error) {
	if client < tdsVersion72 {
		return 0, fmt.Errorf("unsupported tds version 0x%08X", client)
	}
	return min(client, tdsVersion74), nil
}

// negotiatePacketSize returns the client's requested size when valid, else
// the configured default.
func negotiatePacketSize(requested, configured int) int {
	if requested >= minPacketSize && requested <= maxPacketSize {
		return requested
	}
	return configured
}
