package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a backup.
type Kind int

// Kinds of backup. The zero Kind is no kind: a Point must say what it is.
const (
	Full Kind = iota + 1
	CopyOnlyFull
	Differential
	Log
)

// String names the kind as a database administrator would.
func (k Kind) String() string {
	switch k {
	case Full:
		return "full"
	case CopyOnlyFull:
		return "copy-only full"
	case Differential:
		return "differential"
	case Log:
		return "log"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// LSN is a log sequence number in the decimal numeric(25,0) form msdb and
// RESTORE HEADERONLY report. It is held as a 128-bit unsigned integer, so
// LSNs compare with == (and may be map keys) and order with Cmp; every
// numeric(25,0) value fits (10^25 < 2^84). The zero LSN stands for NULL:
// no LSN.
type LSN struct{ hi, lo uint64 }

// maxLSNDigits is numeric(25,0)'s precision.
const maxLSNDigits = 25

// ParseLSN reads an LSN's decimal form. Leading zeros and surrounding
// spaces are allowed; the empty string (NULL) reads as the zero LSN.
func ParseLSN(s string) (LSN, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return LSN{}, nil
	}
	if len(strings.TrimLeft(t, "0")) > maxLSNDigits {
		return LSN{}, fmt.Errorf("parse lsn %q: more than %d digits", s, maxLSNDigits)
	}
	var l LSN
	for _, c := range t {
		if c < '0' || c > '9' {
			return LSN{}, fmt.Errorf("parse lsn %q: not a decimal number", s)
		}
		// at most 25 significant digits: never overflows 128 bits
		h, lo := bits.Mul64(l.lo, 10)
		lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
		l = LSN{hi: l.hi*10 + h + carry, lo: lo}
	}
	return l, nil
}

// LSNFromUint64 makes an LSN from a number that fits in 64 bits.
func LSNFromUint64(n uint64) LSN { return LSN{lo: n} }

// String writes the decimal form ("0" for the zero LSN).
func (l LSN) String() string {
	if l.hi == 0 {
		return strconv.FormatUint(l.lo, 10)
	}
	const e19 = 10_000_000_000_000_000_000
	q, r := l.hi/e19, l.hi%e19
	qlo, rem := bits.Div64(r, l.lo, e19)
	low := strconv.FormatUint(rem, 10)
	return LSN{hi: q, lo: qlo}.String() + strings.Repeat("0", 19-len(low)) + low
}

// IsZero reports whether l is the zero LSN (NULL).
func (l LSN) IsZero() bool { return l == LSN{} }

// Cmp returns -1, 0 or +1 as l is less than, equal to or greater than o.
func (l LSN) Cmp(o LSN) int {
	if c := cmp.Compare(l.hi, o.hi); c != 0 {
		return c
	}
	return cmp.Compare(l.lo, o.lo)
}

// Less reports whether l < o.
func (l LSN) Less(o LSN) bool { return l.Cmp(o) < 0 }

// MarshalText writes the decimal form; JSON carries it as a string because
// an LSN does not fit a float64 exactly.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseLSN.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Point is one recovery point (backup set) of a database, as the chain and
// retention rules see it. IDs are unique among the points of a database.
type Point struct {
	ID   string
	Kind Kind
	// Taken is when the backup finished (backup_finish_date).
	Taken time.Time
	// Started is when it started (backup_start_date), zero if unknown. A
	// log backup surely holds what committed before it started, and
	// perhaps not what committed while it ran: see Point.covers.
	Started  time.Time
	OnDemand bool
	// The LSNs of the backup set, as msdb and RESTORE HEADERONLY report
	// them. LastLSN is the next LSN after the set.
	FirstLSN, LastLSN, CheckpointLSN, DifferentialBaseLSN, DatabaseBackupLSN LSN
	// BackupSetGUID identifies the set; a differential's
	// DifferentialBaseGUID is its base full's BackupSetGUID. Either may be
	// empty for a point recorded before coffer kept them: such points are
	// linked by LSN.
	BackupSetGUID, DifferentialBaseGUID string
	// Fork is the set's last recovery fork GUID; empty when unknown (then
	// the set is taken to be on any fork).
	Fork string
	// FirstFork is the set's first recovery fork GUID, when it differs
	// from Fork: a log backup taken across a restore's fork point starts
	// on the fork the restore came from, and continues that fork's chain.
	FirstFork   string
	BeginsChain bool
	// BulkLogged is set on a log backup that holds bulk-logged changes:
	// it restores only whole (no STOPAT inside it).
	BulkLogged bool
	// HealsBreak, on a full, is why the chain broke before it.
	HealsBreak string
	// Marks are the marked transactions a log backup holds.
	Marks []Mark
	// Expires and Tags are what Policy.Expiry returned when the point was
	// taken. A zero Expires means "not computed" and is never expired.
	Expires time.Time
	Tags    []string
}

// Mark is a marked transaction (BEGIN TRAN name WITH MARK).
type Mark struct {
	Name string
	LSN  LSN
	Time time.Time
}

// Gap is a place where a chain breaks: Before cannot be restored because
// what it needs is missing.
type Gap struct {
	// After is the last point on the same fork before the break, or empty
	// when there is none (or it does not matter, as for a differential).
	After string
	// Before is the point whose chain is broken.
	Before string
	// Reason says what is missing, with the LSN.
	Reason string
}

// ErrBrokenChain is returned (wrapped) by Restorable when a point the
// restore needs is missing.
var ErrBrokenChain = errors.New("backup chain is broken")

// Dependencies returns, for each point that needs another to be restored,
// the points it needs directly, found from the LSNs by the chain rules
// (REFERENCE.md):
//
//   - a differential needs the full (never a copy-only full) whose
//     CheckpointLSN equals its DifferentialBaseLSN;
//   - a log needs the latest full or differential B on its fork with
//     FirstLSN <= B.LastLSN < LastLSN (it is the first log to apply after
//     B), or, when there is none, the log before it on its fork (LastLSN ==
//     its FirstLSN).
//
// Dependencies are direct; follow them to get a whole chain, or use
// Restorable. Fulls, copy-only fulls and points whose chain is broken (see
// Gaps) have no entry. Preferring the latest base keeps chains short: a
// log after this week's full never needs last week's. A differential
// whose own full is missing is passed over as a base. IDs are assumed
// unique; a repeated ID counts once (its first occurrence).
func Dependencies(points []Point) map[string][]string {
	g := newChainGraph(points)
	out := make(map[string][]string)
	for i, d := range g.dep {
		if d >= 0 {
			out[g.pts[i].ID] = []string{g.pts[d].ID}
		}
	}
	return out
}

// Gaps reports every differential and log whose chain breaks at it: no
// full for the differential, no log or base before the log. They are
// ordered by when Before was taken. A catalog kept by Retain has none
// unless it had them before.
func Gaps(points []Point) []Gap {
	g := newChainGraph(points)
	var out []Gap
	for i, pt := range g.pts {
		if g.dep[i] < 0 && (pt.Kind == Differential || pt.Kind == Log) {
			out = append(out, g.gap(i))
		}
	}
	return out
}

// Restorable returns the restore sequence that brings the database to the
// end of point id, as IDs in apply order: a full, the differential when
// one is the latest base, then the logs. It returns an error wrapping
// ErrBrokenChain, naming what is missing, when the chain is incomplete.
func Restorable(points []Point, id string) ([]string, error) {
	g := newChainGraph(points)
	i, ok := g.at[id]
	if !ok {
		return nil, fmt.Errorf("restore to %s: no such recovery point", id)
	}
	var chain []string
	for j := i; j >= 0; j = g.dep[j] {
		if len(chain) > len(g.pts) {
			return nil, fmt.Errorf("restore to %s: the chain loops: %w", id, ErrBrokenChain)
		}
		chain = append(chain, g.pts[j].ID)
		if g.dep[j] >= 0 {
			continue
		}
		switch g.pts[j].Kind {
		case Full, CopyOnlyFull:
		case Differential, Log:
			return nil, fmt.Errorf("restore to the end of %s %s: %s: %w", g.pts[i].Kind, id, g.gap(j).Reason, ErrBrokenChain)
		default:
			return nil, fmt.Errorf("restore to %s: %s has no known kind (%d): %w", id, g.pts[j].ID, int(g.pts[j].Kind), ErrBrokenChain)
		}
	}
	slices.Reverse(chain)
	return chain, nil
}

// chainGraph is the points of a database with each one's direct
// dependency. Each point needs at most one other, so the graph is a
// forest rooted at fulls (and at points whose chain is broken).
type chainGraph struct {
	pts []Point        // first occurrence of each ID, ordered by Taken then ID
	at  map[string]int // ID → index in pts
	dep []int          // index of the point pts[i] needs directly, or -1
	// logs are the indexes of the logs with an LSN range, by LastLSN
	logs []int
}

func newChainGraph(points []Point) *chainGraph {
	g := &chainGraph{at: make(map[string]int, len(points)), pts: make([]Point, 0, len(points))}
	for _, pt := range points {
		if _, dup := g.at[pt.ID]; dup {
			continue
		}
		g.at[pt.ID] = len(g.pts)
		g.pts = append(g.pts, pt)
	}
	slices.SortStableFunc(g.pts, func(a, b Point) int {
		if c := a.Taken.Compare(b.Taken); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i, pt := range g.pts {
		g.at[pt.ID] = i
	}
	g.dep = make([]int, len(g.pts))
	for i := range g.dep {
		g.dep[i] = -1
	}

	// rule 1: a differential belongs to the full whose backup set GUID is
	// its differential base GUID, as SQL Server links them (its base LSN
	// need not be the full's checkpoint: a transaction open across the
	// full moves it). Points recorded without GUIDs fall back to the LSN:
	// the full whose checkpoint is the base; the latest such full when
	// (improbably) there are several.
	fullAt := make(map[LSN]int)
	fullByGUID := make(map[string]int)
	for i, pt := range g.pts {
		if pt.Kind != Full {
			continue
		}
		if !pt.CheckpointLSN.IsZero() {
			fullAt[pt.CheckpointLSN] = i
		}
		if pt.BackupSetGUID != "" {
			fullByGUID[strings.ToLower(pt.BackupSetGUID)] = i
		}
	}
	for i, pt := range g.pts {
		if pt.Kind != Differential {
			continue
		}
		if pt.DifferentialBaseGUID != "" {
			if f, ok := fullByGUID[strings.ToLower(pt.DifferentialBaseGUID)]; ok {
				g.dep[i] = f
				continue
			}
		}
		if pt.DifferentialBaseLSN.IsZero() {
			continue
		}
		if f, ok := fullAt[pt.DifferentialBaseLSN]; ok && (pt.DifferentialBaseGUID == "" || g.pts[f].BackupSetGUID == "") {
			g.dep[i] = f
		}
	}

	// bases a log can start from, by LastLSN (ties: later taken last)
	var bases []int
	for i, pt := range g.pts {
		if pt.LastLSN.IsZero() {
			continue
		}
		if pt.Kind == Full || pt.Kind == Differential && g.dep[i] >= 0 {
			bases = append(bases, i)
		}
	}
	byLast := func(idx []int) {
		slices.SortStableFunc(idx, func(a, b int) int { return g.pts[a].LastLSN.Cmp(g.pts[b].LastLSN) })
	}
	byLast(bases)
	var logs []int // logs by LastLSN (ties: later taken last)
	for i, pt := range g.pts {
		if pt.Kind == Log && hasRange(pt) {
			logs = append(logs, i)
		}
	}
	byLast(logs)
	g.logs = logs

	for i, pt := range g.pts {
		if pt.Kind != Log || !hasRange(pt) {
			continue
		}
		// rule 4: the latest base with FirstLSN <= B.LastLSN < LastLSN
		k := g.searchLast(bases, pt.LastLSN)
		for j := k - 1; j >= 0 && !g.pts[bases[j]].LastLSN.Less(pt.FirstLSN); j-- {
			if pt.startsOn(g.pts[bases[j]].Fork) {
				g.dep[i] = bases[j]
				break
			}
		}
		if g.dep[i] >= 0 {
			continue
		}
		g.dep[i] = g.prevLog(i, logs)
	}
	return g
}

// prevLog returns the log that log i continues (rule 3: its LastLSN is
// i's FirstLSN) on i's fork (rule 7): an exact fork match over an unknown
// one, then the latest taken; -1 when there is none. logs holds the logs
// by LastLSN.
func (g *chainGraph) prevLog(i int, logs []int) int {
	pt := g.pts[i]
	best, exact := -1, false
	for k := g.searchLast(logs, pt.FirstLSN); k < len(logs) && g.pts[logs[k]].LastLSN == pt.FirstLSN; k++ {
		j := logs[k]
		if j == i || !pt.startsOn(g.pts[j].Fork) {
			continue
		}
		e := g.pts[j].Fork != "" && pt.Fork != "" && pt.startsOn(g.pts[j].Fork)
		if best < 0 || e || !exact {
			best, exact = j, e
		}
	}
	return best
}

// searchLast returns the first position in idx, sorted by LastLSN, whose
// point's LastLSN is at least l.
func (g *chainGraph) searchLast(idx []int, l LSN) int {
	return sort.Search(len(idx), func(k int) bool { return !g.pts[idx[k]].LastLSN.Less(l) })
}

// hasRange reports whether a point's FirstLSN and LastLSN are known and
// in order, as every log backup's are.
func hasRange(pt Point) bool {
	return !pt.FirstLSN.IsZero() && pt.FirstLSN.Less(pt.LastLSN)
}

// startsOn reports whether pt can continue a chain on fork: it is on that
// fork, or starts on it (a log across a fork point).
func (pt Point) startsOn(fork string) bool {
	return sameFork(fork, pt.Fork) || pt.FirstFork != "" && sameFork(fork, pt.FirstFork)
}

// sameFork reports whether two recovery forks can be the same one: equal,
// or either unknown.
func sameFork(a, b string) bool {
	return a == b || a == "" || b == "" || strings.EqualFold(a, b)
}

// gap describes why pts[i], a differential or log with no dependency,
// cannot be restored.
func (g *chainGraph) gap(i int) Gap {
	pt := g.pts[i]
	out := Gap{Before: pt.ID}
	switch pt.Kind {
	case Differential:
		switch {
		case pt.DifferentialBaseGUID != "":
			out.Reason = fmt.Sprintf("differential %s needs its base, the full of backup set %s, which is missing", pt.ID, strings.ToLower(pt.DifferentialBaseGUID))
		case pt.DifferentialBaseLSN.IsZero():
			out.Reason = fmt.Sprintf("differential %s has no differential base LSN", pt.ID)
		case g.copyOnlyAt(pt.DifferentialBaseLSN) != "":
			out.Reason = fmt.Sprintf("differential %s has base LSN %s, the checkpoint of copy-only full %s, which is never a differential base, and no full has it",
				pt.ID, pt.DifferentialBaseLSN, g.copyOnlyAt(pt.DifferentialBaseLSN))
		default:
			out.Reason = fmt.Sprintf("differential %s needs the full with checkpoint LSN %s, which is missing", pt.ID, pt.DifferentialBaseLSN)
		}
	case Log:
		if !hasRange(pt) {
			out.Reason = fmt.Sprintf("log %s has no LSN range (first %s, last %s)", pt.ID, pt.FirstLSN, pt.LastLSN)
			return out
		}
		// the last point on the fork that ends before the log begins
		after := -1
		for j, q := range g.pts {
			if j == i || q.Kind == CopyOnlyFull || q.LastLSN.IsZero() || !pt.startsOn(q.Fork) || pt.FirstLSN.Less(q.LastLSN) {
				continue
			}
			if after < 0 || !q.LastLSN.Less(g.pts[after].LastLSN) {
				after = j
			}
		}
		if after >= 0 {
			out.After = g.pts[after].ID
		}
		otherFork := ""
		for _, j := range g.logsEndingAt(pt.FirstLSN) {
			if j != i && !pt.startsOn(g.pts[j].Fork) {
				otherFork = g.pts[j].ID
			}
		}
		if otherFork != "" {
			out.Reason = fmt.Sprintf("log %s begins at LSN %s on recovery fork %s; log %s ends there but on another fork, and chains do not cross forks",
				pt.ID, pt.FirstLSN, pt.Fork, otherFork)
		} else {
			out.Reason = fmt.Sprintf("log %s begins at LSN %s, but no log ends there and no full or differential ends inside it (a gap in the log chain: SQL Server error 4305)",
				pt.ID, pt.FirstLSN)
		}
	}
	return out
}

func (g *chainGraph) copyOnlyAt(ckpt LSN) string {
	for _, q := range g.pts {
		if q.Kind == CopyOnlyFull && q.CheckpointLSN == ckpt {
			return q.ID
		}
	}
	return ""
}

func (g *chainGraph) logsEndingAt(l LSN) []int {
	var out []int
	for j, q := range g.pts {
		if q.Kind == Log && q.LastLSN == l {
			out = append(out, j)
		}
	}
	return out
}

// order returns the indexes of the points in apply order: by Taken, but
// every point after the point it depends on.
func (g *chainGraph) order() []int {
	done := make([]bool, len(g.pts))
	out := make([]int, 0, len(g.pts))
	var up []int
	for i := range g.pts {
		up = up[:0]
		for j := i; j >= 0 && !done[j]; j = g.dep[j] {
			done[j] = true
			up = append(up, j)
		}
		for k := len(up) - 1; k >= 0; k-- {
			out = append(out, up[k])
		}
	}
	return out
}
