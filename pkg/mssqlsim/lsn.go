package mssqlsim

import (
	"fmt"
	"strconv"
)

// LSN is a log sequence number in the numeric form SQL Server shows in
// msdb and RESTORE HEADERONLY: VLF sequence * 10^15 + block * 10^5 + slot.
// Zero means none.
type LSN uint64

const (
	lsnSlotSpan  = 100000
	lsnBlockSpan = 10000000000 // blocks per VLF
)

// String returns the decimal form, as numeric(25,0).
func (l LSN) String() string { return strconv.FormatUint(uint64(l), 10) }

// parts splits an LSN into VLF, block and slot.
func (l LSN) parts() (vlf, block, slot uint64) {
	v := uint64(l)
	return v / (lsnSlotSpan * lsnBlockSpan), (v / lsnSlotSpan) % lsnBlockSpan, v % lsnSlotSpan
}

// hex returns the VLF:block:slot form SQL Server uses in some messages.
func (l LSN) hex() string {
	v, b, s := l.parts()
	return fmt.Sprintf("%08x:%08x:%04x", v, b, s)
}

// lsnGen hands out increasing LSNs: one slot per log record, a new block per
// transaction, a new VLF every lsnRecordsPerVLF blocks.
type lsnGen struct {
	next LSN
}

const lsnBlocksPerVLF = 4096

func newLSNGen(vlf uint64) lsnGen {
	return lsnGen{next: LSN(vlf*lsnSlotSpan*lsnBlockSpan + 16*lsnSlotSpan + 1)}
}

// take returns the next LSN and moves to a new block.
func (g *lsnGen) take() LSN {
	l := g.next
	vlf, block, _ := l.parts()
	block++
	if block%lsnBlocksPerVLF == 0 {
		vlf++
		block = 16
	}
	g.next = LSN(vlf*lsnSlotSpan*lsnBlockSpan + block*lsnSlotSpan + 1)
	return l
}
