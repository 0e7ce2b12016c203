package mssqlsim

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The backup file format. A device (a file or an object) is a media header
// followed by backup sets. A backup set striped over N devices has the same
// set header on each, then its body cut into blocks dealt round-robin to the
// devices, then an end frame and a trailer on each.
//
//	frame  := kind(1) length(4) payload crc32c(payload)(4)
//	media  := frame 'M' JSON(mediaHeader)
//	set    := frame 'S' JSON(setHeader) block* frame 'E' frame 'T' JSON(setTrailer)
//	block  := kind 'B'(1) rawLen(4) storedLen(4) flags(1) crc(4) bytes
//
// A block's crc covers its stored bytes and is set only WITH CHECKSUM:
// without it, damage inside a page is not detected, as in SQL Server.
//
// A full or differential body is BodyPages pages, then, when HasTables, the
// user tables (table.go); a log body is log records, whose flag bit 2 says
// user-table changes follow the page changes. Older backups have neither.

const (
	frameMedia   = 'M'
	frameSet     = 'S'
	frameEnd     = 'E'
	frameTrailer = 'T'
	frameBlock   = 'B'

	blockFlagZstd     = 1
	blockFlagChecksum = 2

	blockSize = 64 * 1024 // 8 pages, one extent
)

// Backup types as RESTORE HEADERONLY reports them.
const (
	typeFull = 1
	typeLog  = 2
	typeDiff = 5
)

type mediaHeader struct {
	MediaSetGUID GUID
	FamilyCount  int
	FamilySeq    int // 1-based
	MediaName    string
	Created      time.Time
	// MaxTransferSize is the part size a URL was written with, which a
	// restore reads it by, as SQL Server's does. Zero on disk, and in
	// media an older simulator wrote.
	MaxTransferSize int `json:",omitempty"`
}

// writer returns the product that wrote the set.
func (h setHeader) writer() product {
	if p, ok := products[h.SoftwareMajor]; ok {
		return p
	}
	return products[16]
}

type setHeader struct {
	Name                  string
	Description           string
	Type                  int
	DatabaseName          string
	ServerName            string
	Collation             string
	UserName              string
	DatabaseGUID          GUID
	FamilyGUID            GUID
	FirstRecoveryForkGUID GUID
	LastRecoveryForkGUID  GUID
	ForkPointLSN          LSN
	FirstLSN              LSN
	LastLSN               LSN
	CheckpointLSN         LSN
	DatabaseBackupLSN     LSN
	DifferentialBaseLSN   LSN
	DifferentialBaseGUID  GUID
	// BackupSetGUID identifies the set (HEADERONLY BackupSetGUID, msdb
	// backup_set_uuid); a full's is the DifferentialBaseGUID of the
	// differentials based on it. Empty in sets an older simulator wrote.
	BackupSetGUID GUID
	// BaseLSN, on a full, is the differential base it sets: the LSN its
	// data copy began at, after its checkpoint and after any transaction
	// open at its start. Zero in older sets: the checkpoint.
	BaseLSN         LSN
	BackupStartDate time.Time
	// UTCOffset is the backing-up server's local time less UTC at the
	// start, in seconds: HEADERONLY reports local times, as SQL Server
	// does, wherever the file is read.
	UTCOffset int `json:",omitempty"`
	// TimeZone is the IANA name of the backing-up server's time zone,
	// the clock of the set's log records: STOPAT on another server is
	// read in it. Empty in sets an older simulator wrote.
	TimeZone string `json:",omitempty"`
	// SoftwareMajor and SoftwareBuild are the version of the server that
	// wrote the set (HEADERONLY SoftwareVersionMajor/Build): a server of
	// an older major version cannot restore it. Zero in sets an older
	// simulator wrote, which were all SQL Server 2022's.
	SoftwareMajor     int       `json:",omitempty"`
	SoftwareBuild     int       `json:",omitempty"`
	ConsistentTime    time.Time // every commit at or before this is in the set
	IsCopyOnly        bool
	BeginsLogChain    bool
	HasBulkLoggedData bool
	Compressed        bool
	Checksums         bool
	RecoveryModel     RecoveryModel
	Seed              uint64
	DataPages         int
	Files             []File
	// BodyPages is the number of pages a full or differential body holds
	// before its table section, present when HasTables (table.go); older
	// backups have neither and hold pages only.
	BodyPages int  `json:",omitempty"`
	HasTables bool `json:",omitempty"`
	// StripeCount and StripeSeq place this device in the set's stripes.
	StripeCount  int
	StripeSeq    int
	MediaSetGUID GUID
}

// baseLSN is the differential base a full sets.
func (h setHeader) baseLSN() LSN {
	if h.BaseLSN != 0 {
		return h.BaseLSN
	}
	return h.CheckpointLSN
}

type setTrailer struct {
	BackupFinishDate time.Time
	// UTCOffset is the offset at the finish, in seconds (a backup can
	// span a daylight-saving change).
	UTCOffset   int `json:",omitempty"`
	RawBytes    int64
	StoredBytes int64
	Pages       int64
	Records     int64
}

// localStart is the backup's start in its server's local time.
func (h setHeader) localStart() time.Time { return atOffset(h.BackupStartDate, h.UTCOffset) }

// localFinish is the backup's finish in its server's local time.
func (t setTrailer) localFinish() time.Time { return atOffset(t.BackupFinishDate, t.UTCOffset) }

// backupSet is a set header and trailer as read back from a device.
type backupSet struct {
	Position int
	setHeader
	setTrailer
	bodyOffset int64 // offset of the first block on this device
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	var h [5]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[1:], uint32(len(payload)))
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], crc32.Checksum(payload, castagnoli))
	for _, b := range [][]byte{h[:], payload, c[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// headerAlign is the size media and set headers are padded to, as MTF
// pads its descriptor blocks: the pages that follow start at the same
// offsets in every backup of a database, whatever the header holds, so
// content-defined chunking deduplicates them across backups.
const headerAlign = 4096

func writeJSONFrame(w io.Writer, kind byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if kind == frameMedia || kind == frameSet {
		// trailing spaces are valid JSON whitespace
		total := 9 + len(b)
		if pad := (headerAlign - total%headerAlign) % headerAlign; pad > 0 {
			b = append(b, bytes.Repeat([]byte{' '}, pad)...)
		}
	}
	return writeFrame(w, kind, b)
}

// errMalformed is returned for a device that is not a well-formed backup.
var errMalformed = errors.New("backup media is incorrectly formed")

// maxFrame bounds a header frame so a corrupt length cannot exhaust memory.
const maxFrame = 16 << 20

func readFrame(r io.Reader, want byte) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if h[0] != want {
		return nil, fmt.Errorf("%w: frame %q where %q was expected", errMalformed, h[0], want)
	}
	n := binary.LittleEndian.Uint32(h[1:])
	if n > maxFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes", errMalformed, n)
	}
	buf := make([]byte, n+4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if crc32.Checksum(buf[:n], castagnoli) != binary.LittleEndian.Uint32(buf[n:]) {
		return nil, fmt.Errorf("%w: damaged %q frame", errMalformed, want)
	}
	return buf[:n], nil
}

func readJSONFrame(r io.Reader, want byte, v any) error {
	b, err := readFrame(r, want)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	return nil
}

// setWriter cuts a backup set's body into blocks and deals them to the
// stripes.
type setWriter struct {
	stripes  []*bufio.Writer
	buf      []byte
	next     int // stripe for the next block
	checksum bool
	enc      *zstd.Encoder
	scratch  []byte
	trailer  setTrailer
}

func newSetWriter(stripes []io.Writer, hdr setHeader, media []mediaHeader) (*setWriter, error) {
	sw := &setWriter{checksum: hdr.Checksums, buf: make([]byte, 0, blockSize)}
	if hdr.Compressed {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		sw.enc = enc
	}
	for k, w := range stripes {
		bw := bufio.NewWriterSize(w, 1<<20)
		if media != nil {
			if err := writeJSONFrame(bw, frameMedia, media[k]); err != nil {
				return nil, err
			}
		}
		h := hdr
		h.StripeCount = len(stripes)
		h.StripeSeq = k + 1
		if err := writeJSONFrame(bw, frameSet, h); err != nil {
			return nil, err
		}
		sw.stripes = append(sw.stripes, bw)
	}
	return sw, nil
}

// Write adds body bytes.
func (sw *setWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(sw.buf[len(sw.buf):cap(sw.buf)], p)
		sw.buf = sw.buf[:len(sw.buf)+k]
		p = p[k:]
		if len(sw.buf) == cap(sw.buf) {
			if err := sw.flushBlock(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (sw *setWriter) flushBlock() error {
	if len(sw.buf) == 0 {
		return nil
	}
	raw := sw.buf
	stored := raw
	var flags byte
	if sw.enc != nil {
		sw.scratch = sw.enc.EncodeAll(raw, sw.scratch[:0])
		if len(sw.scratch) < len(raw) {
			stored = sw.scratch
			flags |= blockFlagZstd
		}
	}
	var crc uint32
	if sw.checksum {
		flags |= blockFlagChecksum
		crc = crc32.Checksum(stored, castagnoli)
	}
	var h [14]byte
	h[0] = frameBlock
	binary.LittleEndian.PutUint32(h[1:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(h[5:], uint32(len(stored)))
	h[9] = flags
	binary.LittleEndian.PutUint32(h[10:], crc)
	w := sw.stripes[sw.next]
	sw.next = (sw.next + 1) % len(sw.stripes)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if _, err := w.Write(stored); err != nil {
		return err
	}
	sw.trailer.RawBytes += int64(len(raw))
	sw.trailer.StoredBytes += int64(len(stored)) + int64(len(h))
	sw.buf = sw.buf[:0]
	return nil
}

// Close writes the last block, the end frames and the trailers, and
// flushes. It does not close the devices.
func (sw *setWriter) Close(finish time.Time) error {
	if err := sw.flushBlock(); err != nil {
		return err
	}
	sw.trailer.BackupFinishDate = finish
	for _, w := range sw.stripes {
		if err := writeFrame(w, frameEnd, nil); err != nil {
			return err
		}
		if err := writeJSONFrame(w, frameTrailer, sw.trailer); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if sw.enc != nil {
		sw.enc.Close()
	}
	return nil
}

// countingReader counts the bytes read through it, to know offsets on
// devices read sequentially.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// blockHeader is a block's frame header.
type blockHeader struct {
	raw, stored uint32
	flags       byte
	crc         uint32
	end         bool
}

func readBlockHeader(r io.Reader) (blockHeader, error) {
	var k [1]byte
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return blockHeader{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if k[0] == frameEnd {
		var rest [8]byte
		if _, err := io.ReadFull(r, rest[:]); err != nil {
			return blockHeader{}, fmt.Errorf("%w: %v", errMalformed, err)
		}
		return blockHeader{end: true}, nil
	}
	if k[0] != frameBlock {
		return blockHeader{}, fmt.Errorf("%w: block expected", errMalformed)
	}
	var h [blockHeaderSize - 1]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return blockHeader{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return parseBlockHeader(h[:])
}

// Sizes of a block's frame header and of the end frame, kind byte included.
const (
	blockHeaderSize = 14
	endFrameSize    = 9
)

// parseBlockHeader reads a block's frame header after its kind byte.
func parseBlockHeader(h []byte) (blockHeader, error) {
	bh := blockHeader{
		raw:    binary.LittleEndian.Uint32(h[0:]),
		stored: binary.LittleEndian.Uint32(h[4:]),
		flags:  h[8],
		crc:    binary.LittleEndian.Uint32(h[9:]),
	}
	if bh.raw > blockSize || bh.stored > blockSize*2 {
		return blockHeader{}, fmt.Errorf("%w: block of %d bytes", errMalformed, bh.raw)
	}
	return bh, nil
}

// skipBlocksAt steps over the blocks of a set's body that starts at at in
// a file, reading only their frame headers, and returns where the body's
// end frame ends: where the set's trailer starts.
func skipBlocksAt(f io.ReaderAt, at int64) (int64, error) {
	var h [blockHeaderSize]byte
	for {
		n, err := f.ReadAt(h[:], at)
		switch {
		case n >= endFrameSize && h[0] == frameEnd:
			return at + endFrameSize, nil
		case n >= 1 && h[0] != frameBlock && h[0] != frameEnd:
			return 0, fmt.Errorf("%w: block expected", errMalformed)
		case n < blockHeaderSize:
			return 0, fmt.Errorf("%w: %v", errMalformed, cmp.Or(err, io.ErrUnexpectedEOF))
		}
		bh, err := parseBlockHeader(h[1:])
		if err != nil {
			return 0, err
		}
		at += blockHeaderSize + int64(bh.stored)
	}
}

// scanSets reads the media header and every backup set's header and
// trailer from a device read from its start. end is the offset just past the
// last complete set: a failed backup can leave an incomplete set after it,
// which the next backup to the device overwrites.
func scanSets(r io.Reader) (m mediaHeader, sets []backupSet, end int64, err error) {
	m, sets, end, err = scanSetsAt(r)
	return
}

func scanSetsAt(r io.Reader) (mediaHeader, []backupSet, int64, error) {
	cr := &countingReader{r: r}
	// A file is scanned as SQL Server scans one: only the frames are read,
	// and each block's body is stepped over, not read.
	f, isFile := r.(interface {
		io.ReaderAt
		io.Seeker
	})
	size := 256 << 10
	if isFile {
		size = 4 << 10
	}
	br := bufio.NewReaderSize(cr, size)
	var m mediaHeader
	if err := readJSONFrame(br, frameMedia, &m); err != nil {
		if errors.Is(err, io.EOF) {
			return m, nil, 0, fmt.Errorf("%w: empty device", errMalformed)
		}
		return m, nil, 0, err
	}
	var sets []backupSet
	end := cr.n - int64(br.Buffered())
	for {
		var s backupSet
		if err := readJSONFrame(br, frameSet, &s.setHeader); err != nil {
			if errors.Is(err, io.EOF) {
				return m, sets, end, nil
			}
			return m, sets, end, err
		}
		s.Position = len(sets) + 1
		s.bodyOffset = cr.n - int64(br.Buffered())
		if isFile {
			at, err := skipBlocksAt(f, s.bodyOffset)
			if err != nil {
				return m, sets, end, err
			}
			if _, err := f.Seek(at, io.SeekStart); err != nil {
				return m, sets, end, err
			}
			cr.n = at
			br.Reset(cr)
		} else {
			for {
				bh, err := readBlockHeader(br)
				if err != nil {
					return m, sets, end, err
				}
				if bh.end {
					break
				}
				if _, err := br.Discard(int(bh.stored)); err != nil {
					return m, sets, end, fmt.Errorf("%w: %v", errMalformed, err)
				}
			}
		}
		if err := readJSONFrame(br, frameTrailer, &s.setTrailer); err != nil {
			return m, sets, end, err
		}
		sets = append(sets, s)
		end = cr.n - int64(br.Buffered())
	}
}

// errBlockChecksum reports a block whose checksum does not match.
type errBlockChecksum struct{ stripe, block int }

func (e errBlockChecksum) Error() string {
	return fmt.Sprintf("block %d of stripe %d failed its checksum", e.block, e.stripe)
}

// setReader reads a backup set's body back from its stripes, in order,
// verifying block checksums when the set has them.
type setReader struct {
	stripes []io.Reader
	done    []bool
	next    int
	blocks  int
	verify  bool
	dec     *zstd.Decoder
	buf     []byte // the block being read: stored, or raw
	stored  []byte // the block as stored
	raw     []byte // a compressed block, decompressed
	off     int
}

// inMemory is a reader that serves its reads out of memory (a URL's
// ranges), which a buffer in front of it would only copy again.
type inMemory interface{ servesFromMemory() }

// newSetReader reads from readers positioned at each stripe's first block,
// ordered by stripe sequence.
func newSetReader(stripes []io.Reader, verify bool) (*setReader, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	sr := &setReader{verify: verify, dec: dec, done: make([]bool, len(stripes))}
	for _, r := range stripes {
		if _, ok := r.(inMemory); !ok {
			r = bufio.NewReaderSize(r, 256<<10)
		}
		sr.stripes = append(sr.stripes, r)
	}
	return sr, nil
}

func (sr *setReader) Close() { sr.dec.Close() }

func (sr *setReader) Read(p []byte) (int, error) {
	for sr.off >= len(sr.buf) {
		if err := sr.nextBlock(); err != nil {
			return 0, err
		}
	}
	n := copy(p, sr.buf[sr.off:])
	sr.off += n
	return n, nil
}

func (sr *setReader) nextBlock() error {
	k := sr.next
	if sr.done[k] {
		return io.EOF
	}
	bh, err := readBlockHeader(sr.stripes[k])
	if err != nil {
		return err
	}
	if bh.end {
		sr.done[k] = true
		// every stripe ends at the same round
		return io.EOF
	}
	if cap(sr.stored) < int(bh.stored) {
		sr.stored = make([]byte, bh.stored)
	}
	stored := sr.stored[:bh.stored]
	if _, err := io.ReadFull(sr.stripes[k], stored); err != nil {
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	if sr.verify && bh.flags&blockFlagChecksum != 0 && crc32.Checksum(stored, castagnoli) != bh.crc {
		return errBlockChecksum{stripe: k + 1, block: sr.blocks}
	}
	if bh.flags&blockFlagZstd != 0 {
		sr.raw, err = sr.dec.DecodeAll(stored, sr.raw[:0])
		if err != nil || len(sr.raw) != int(bh.raw) {
			return fmt.Errorf("%w: block %d does not decompress", errMalformed, sr.blocks)
		}
		sr.buf = sr.raw
	} else {
		sr.buf = stored
	}
	sr.off = 0
	sr.blocks++
	sr.next = (sr.next + 1) % len(sr.stripes)
	return nil
}

// encodeRecord appends a log record's wire form to b.
func encodeRecord(b []byte, r logRecord) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(r.LSN))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	var flags byte
	if r.Bulk {
		flags |= 1
	}
	if len(r.Tables) > 0 {
		flags |= 2 // user-table changes follow the pages
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.Mark)))
	b = append(b, r.Mark...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Pages)))
	for _, c := range r.Pages {
		b = binary.LittleEndian.AppendUint32(b, c.ID)
		b = binary.LittleEndian.AppendUint32(b, c.Version)
	}
	if len(r.Tables) > 0 {
		b = appendOps(b, r.Tables)
	}
	return b
}

// decodeRecord reads one log record.
func decodeRecord(r *bufio.Reader) (logRecord, error) {
	var h [19]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return logRecord{}, err
	}
	rec := logRecord{
		LSN:  LSN(binary.LittleEndian.Uint64(h[0:])),
		Time: time.Unix(0, int64(binary.LittleEndian.Uint64(h[8:]))).UTC(),
		Bulk: h[16]&1 != 0,
	}
	ml := binary.LittleEndian.Uint16(h[17:])
	mark := make([]byte, ml)
	if _, err := io.ReadFull(r, mark); err != nil {
		return logRecord{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	rec.Mark = string(mark)
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return logRecord{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	cnt := binary.LittleEndian.Uint32(n[:])
	if cnt > 1<<20 {
		return logRecord{}, fmt.Errorf("%w: log record with %d pages", errMalformed, cnt)
	}
	rec.Pages = make([]pageChange, cnt)
	var pc [8]byte
	for k := range rec.Pages {
		if _, err := io.ReadFull(r, pc[:]); err != nil {
			return logRecord{}, fmt.Errorf("%w: %v", errMalformed, err)
		}
		rec.Pages[k] = pageChange{ID: binary.LittleEndian.Uint32(pc[0:]), Version: binary.LittleEndian.Uint32(pc[4:])}
	}
	if h[16]&2 != 0 {
		ops, err := readOps(r)
		if err != nil {
			return logRecord{}, err
		}
		rec.Tables = ops
	}
	return rec, nil
}
