package tds

import (
	"encoding/binary"
	"strconv"
	"unicode/utf16"
)

// Token types (MS-TDS 2.2.7).
const (
	tokColMetadata byte = 0x81
	tokError       byte = 0xAA
	tokInfo        byte = 0xAB
	tokLoginAck    byte = 0xAD
	tokRow         byte = 0xD1
	tokEnvChange   byte = 0xE3
	tokDone        byte = 0xFD
)

// DONE status bits.
const (
	doneMore  uint16 = 0x01
	doneError uint16 = 0x02
	doneCount uint16 = 0x10
	doneAttn  uint16 = 0x20
)

// curCmdSelect is the DONE CurCmd value of a SELECT statement.
const curCmdSelect uint16 = 0xC1

// ENVCHANGE types.
const (
	envDatabase     byte = 1
	envLanguage     byte = 2
	envPacketSize   byte = 4
	envCollation    byte = 7
	envBeginTran    byte = 8
	envCommitTran   byte = 9
	envRollbackTran byte = 10
)

const (
	maxBVarCharUnits = 255
	// maxMessageUnits keeps an ERROR or INFO token within its 16-bit
	// length; SQL Server's own messages are at most 2047 characters.
	maxMessageUnits = 4000
	// collationLatin1 is SQL_Latin1_General_CP1_CI_AS: LCID 0x409, flags
	// ignore case, kana and width, sort id 52.
	collationLatin1 = "\x09\x04\xD0\x00\x34"
)

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// ucs2 encodes s as UTF-16LE.
func ucs2(s string) []byte {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		b = appendU16(b, u)
	}
	return b
}

// appendUCS2Limited appends a length prefix of prefixLen bytes (1 or 2)
// counting UTF-16 units, then s, truncated to limit units.
func appendUCS2Limited(b []byte, s string, prefixLen, limit int) []byte {
	u := ucs2(s)
	if len(u)/2 > limit {
		u = u[:2*limit]
	}
	if prefixLen == 1 {
		b = append(b, byte(len(u)/2))
	} else {
		b = appendU16(b, uint16(len(u)/2))
	}
	return append(b, u...)
}

// appendBVarChar appends a B_VARCHAR (byte count of characters, UTF-16LE).
func appendBVarChar(b []byte, s string) []byte {
	return appendUCS2Limited(b, s, 1, maxBVarCharUnits)
}

// decodeUCS2 decodes UTF-16LE; an odd trailing byte is dropped.
func decodeUCS2(b []byte) string {
	units := make([]uint16, len(b)/2)
	for i := range units {
		units[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(units))
}

// appendEnvChange appends an ENVCHANGE token whose new and old values are
// already length-prefixed (B_VARCHAR or B_VARBYTE).
func appendEnvChange(b []byte, typ byte, newVal, oldVal []byte) []byte {
	b = append(b, tokEnvChange)
	b = appendU16(b, uint16(1+len(newVal)+len(oldVal)))
	b = append(b, typ)
	b = append(b, newVal...)
	return append(b, oldVal...)
}

// envString is a B_VARCHAR value for appendEnvChange.
func envString(s string) []byte { return appendBVarChar(nil, s) }

// envBytes is a B_VARBYTE value for appendEnvChange.
func envBytes(v []byte) []byte { return append([]byte{byte(len(v))}, v...) }

// appendDone appends a DONE token.
func appendDone(b []byte, status, curCmd uint16, count int64) []byte {
	b = append(b, tokDone)
	b = appendU16(b, status)
	b = appendU16(b, curCmd)
	return appendU64(b, uint64(count))
}

// appendMessage appends an ERROR (severity above 10) or INFO token.
func appendMessage(b []byte, e *Error, server string) []byte {
	tok := tokInfo
	if e.Severity > 10 {
		tok = tokError
	}
	if e.Server != "" {
		server = e.Server
	}
	body := make([]byte, 0, 64+2*len(e.Message))
	body = appendU32(body, uint32(e.Number))
	body = append(body, e.State, e.Severity)
	body = appendUCS2Limited(body, e.Message, 2, maxMessageUnits) // US_VARCHAR
	body = appendBVarChar(body, server)
	body = appendBVarChar(body, e.Proc)
	body = appendU32(body, uint32(e.Line))
	b = append(b, tok)
	b = appendU16(b, uint16(len(body)))
	return append(b, body...)
}

// appendLoginAck appends a LOGINACK token.
func appendLoginAck(b []byte, tdsVersion uint32, cfg *Config) []byte {
	body := []byte{1} // interface: SQL_TSQL
	body = binary.BigEndian.AppendUint32(body, tdsVersion)
	body = appendBVarChar(body, "Microsoft SQL Server")
	body = append(body, cfg.VersionMajor, cfg.VersionMinor)
	body = binary.BigEndian.AppendUint16(body, cfg.VersionBuild)
	b = append(b, tokLoginAck)
	b = appendU16(b, uint16(len(body)))
	return append(b, body...)
}

// loginResponse builds the token stream that accepts a login.
func loginResponse(cfg *Config, tdsVersion uint32, database string, packetSize int) []byte {
	var b []byte
	if database == "" {
		database = "master"
	}
	b = appendEnvChange(b, envDatabase, envString(database), envString("master"))
	b = appendMessage(b, &Error{Number: 5701, State: 2, Message: "Changed database context to '" + database + "'."}, cfg.ServerName)
	b = appendEnvChange(b, envCollation, envBytes([]byte(collationLatin1)), envBytes(nil))
	b = appendEnvChange(b, envLanguage, envString("us_english"), envString(""))
	b = appendMessage(b, &Error{Number: 5703, State: 1, Message: "Changed language setting to us_english."}, cfg.ServerName)
	b = appendLoginAck(b, tdsVersion, cfg)
	size := strconv.Itoa(packetSize)
	b = appendEnvChange(b, envPacketSize, envString(size), envString(size))
	return appendDone(b, 0, 0, 0)
}
