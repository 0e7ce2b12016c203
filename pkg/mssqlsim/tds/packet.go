package tds

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
)

// Packet types (MS-TDS 2.2.3.1.1).
const (
	pktSQLBatch  byte = 1
	pktReply     byte = 4
	pktRPC       byte = 3
	pktAttention byte = 6
	pktTransMgr  byte = 14
	pktLogin7    byte = 16
	pktPrelogin  byte = 18
)

const (
	headerSize = 8
	statusEOM  = 0x01
	// statusResetConnection and statusResetConnectionKeepTran ask the
	// server to reset the session (as sp_reset_connection does) before
	// the request: the client's pool hands the connection to a new user.
	statusResetConnection         = 0x08
	statusResetConnectionKeepTran = 0x10
	minPacketSize                 = 512
	maxPacketSize                 = 32767
	defaultPktSize                = 4096
	// maxMessageSize bounds one client message, so a client cannot make the
	// server buffer without limit.
	maxMessageSize = 256 << 20
)

// errMalformed marks client input that violates the protocol.
var errMalformed = errors.New("malformed tds message")

// message is one complete client message, reassembled from its packets.
type message struct {
	typ  byte
	data []byte
	// reset is set when the client asked for the session to be reset
	// before the request runs (a pooled connection taken up again).
	reset bool
}

// packetReader reads client messages.
type packetReader struct {
	r io.Reader
	// retry reports whether a read timeout that happened before any byte of
	// a packet arrived should be ignored.
	retry func() bool
}

// readMessage reads packets until one carries the end-of-message status.
func (pr *packetReader) readMessage() (message, error) {
	var m message
	for first := true; ; first = false {
		var hdr [headerSize]byte
		if err := pr.readHeader(hdr[:]); err != nil {
			return m, err
		}
		size := int(binary.BigEndian.Uint16(hdr[2:4]))
		if size < headerSize {
			return m, fmt.Errorf("packet length %d: %w", size, errMalformed)
		}
		if first {
			m.typ = hdr[0]
		} else if hdr[0] != m.typ {
			return m, fmt.Errorf("packet type %d inside message of type %d: %w", hdr[0], m.typ, errMalformed)
		}
		if len(m.data)+size-headerSize > maxMessageSize {
			return m, fmt.Errorf("message larger than %d bytes: %w", maxMessageSize, errMalformed)
		}
		start := len(m.data)
		m.data = slices.Grow(m.data, size-headerSize)[:start+size-headerSize]
		if _, err := io.ReadFull(pr.r, m.data[start:]); err != nil {
			return m, fmt.Errorf("read packet body: %w", err)
		}
		// The ignore-event bit is accepted silently; reset connection is
		// handed to the session before the request runs.
		if first && hdr[1]&(statusResetConnection|statusResetConnectionKeepTran) != 0 {
			m.reset = true
		}
		if hdr[1]&statusEOM != 0 {
			return m, nil
		}
	}
}

// readHeader reads a packet header, retrying read timeouts that happen
// before its first byte when pr.retry allows.
func (pr *packetReader) readHeader(hdr []byte) error {
	for {
		n, err := io.ReadFull(pr.r, hdr)
		if err == nil {
			return nil
		}
		var ne net.Error
		if n == 0 && errors.As(err, &ne) && ne.Timeout() && pr.retry != nil && pr.retry() {
			continue
		}
		if n == 0 && errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("read packet header: %w", err)
	}
}

// packetWriter splits messages into packets of the negotiated size.
type packetWriter struct {
	w          io.Writer
	packetSize int
	spid       uint16
	seq        byte // packet number of the next packet, 1 at a message start
	out        []byte
}

// write sends data as packets of type typ. The last packet carries EOM when
// eom is set; otherwise the message continues in a later write. An empty
// data with eom sends a header-only packet; an empty data without eom sends
// nothing.
func (pw *packetWriter) write(typ byte, data []byte, eom bool) error {
	if len(data) == 0 && !eom {
		return nil
	}
	chunk := pw.packetSize - headerSize
	pw.out = pw.out[:0]
	for {
		n := min(len(data), chunk)
		last := n == len(data)
		var status byte
		if last && eom {
			status = statusEOM
		}
		pw.out = append(pw.out, typ, status, 0, 0, byte(pw.spid>>8), byte(pw.spid), pw.seq, 0)
		binary.BigEndian.PutUint16(pw.out[len(pw.out)-6:], uint16(n+headerSize))
		pw.out = append(pw.out, data[:n]...)
		pw.seq++
		data = data[n:]
		if last {
			break
		}
	}
	if eom {
		pw.seq = 1
	}
	if _, err := pw.w.Write(pw.out); err != nil {
		return fmt.Errorf("write packets: %w", err)
	}
	if cap(pw.out) > 1<<20 {
		pw.out = nil
	}
	return nil
}
