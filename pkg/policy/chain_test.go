package policy

import (
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String of the result
		wantErr bool
	}{
		{in: "", want: "0"},
		{in: "0", want: "0"},
		{in: "  42000000012345600001 ", want: "42000000012345600001"},
		{in: "18446744073709551615", want: "18446744073709551615"}, // 2^64-1
		{in: "18446744073709551616", want: "18446744073709551616"}, // 2^64
		{in: "9999999999999999999999999", want: "9999999999999999999999999"},
		{in: "00000000000000000000000000000000000000000017", want: "17"},
		{in: "10000000000000000000000000", wantErr: true}, // 26 digits: past numeric(25,0)
		{in: "-1", wantErr: true},
		{in: "12.5", wantErr: true},
		{in: "0x10", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseLSN(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("ParseLSN(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestLSNOrder(t *testing.T) {
	small := mustLSN(t, "18446744073709551615")
	big := mustLSN(t, "18446744073709551616")
	bigger := mustLSN(t, "4200000000000000000000001")
	if !small.Less(big) || !big.Less(bigger) || bigger.Less(big) || big.Cmp(big) != 0 || bigger.Cmp(small) != 1 {
		t.Errorf("order of %s < %s < %s is wrong", small, big, bigger)
	}
	if mustLSN(t, "0042") != LSNFromUint64(42) {
		t.Errorf("got %v, want LSNs equal with ==", mustLSN(t, "0042"))
	}
	if !(LSN{}).IsZero() || LSNFromUint64(1).IsZero() {
		t.Error("IsZero is wrong")
	}
	b, err := json.Marshal(struct{ L LSN }{bigger})
	if err != nil || string(b) != `{"L":"4200000000000000000000001"}` {
		t.Errorf("marshal: got %s (%v), want the LSN as a decimal string", b, err)
	}
	var back struct{ L LSN }
	if err := json.Unmarshal(b, &back); err != nil || back.L != bigger {
		t.Errorf("unmarshal: got %v (%v), want %v", back.L, err, bigger)
	}
}

func mustLSN(t *testing.T, s string) LSN {
	t.Helper()
	l, err := ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// chainFixture is one database's history, LSNs small for reading:
//
//	F1 full 100..110; L1 spans it; L2; D1 differential on F1; L3 spans D1;
//	L4; C1 copy-only full; L5 spans C1 (but C1 is no base); F2 full;
//	O1 on-demand full right after F2; L6 spans both; L7; D2 on O1; L8.
func chainFixture() []Point {
	t0 := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	n := 0
	pt := func(id string, k Kind, first, ckpt, last, base uint64) Point {
		n++
		return Point{ID: id, Kind: k, Taken: t0.Add(time.Duration(n) * 15 * time.Minute),
			FirstLSN: LSNFromUint64(first), CheckpointLSN: LSNFromUint64(ckpt), LastLSN: LSNFromUint64(last),
			DifferentialBaseLSN: LSNFromUint64(base), Fork: "fork-a"}
	}
	points := []Point{
		pt("F1", Full, 100, 100, 110, 0),
		pt("L1", Log, 90, 0, 120, 0),
		pt("L2", Log, 120, 0, 130, 0),
		pt("D1", Differential, 135, 135, 140, 100),
		pt("L3", Log, 130, 0, 150, 0),
		pt("L4", Log, 150, 0, 160, 0),
		pt("C1", CopyOnlyFull, 165, 165, 170, 0),
		pt("L5", Log, 160, 0, 180, 0),
		pt("F2", Full, 185, 185, 190, 0),
		pt("O1", Full, 192, 192, 195, 0),
		pt("L6", Log, 180, 0, 200, 0),
		pt("L7", Log, 200, 0, 210, 0),
		pt("D2", Differential, 212, 212, 215, 192),
		pt("L8", Log, 210, 0, 220, 0),
	}
	points[9].OnDemand = true // O1
	return points
}

func without(points []Point, ids ...string) []Point {
	return slices.DeleteFunc(slices.Clone(points), func(p Point) bool { return slices.Contains(ids, p.ID) })
}

func TestDependencies(t *testing.T) {
	want := map[string][]string{
		"D1": {"F1"},
		"L1": {"F1"}, // first log after F1 (rule 4)
		"L2": {"L1"},
		"L3": {"D1"}, // the latest base it spans, not L2
		"L4": {"L3"},
		"L5": {"L4"}, // spans the copy-only C1, which is no base
		"L6": {"O1"}, // spans F2 and O1: the latest
		"L7": {"L6"},
		"D2": {"O1"},
		"L8": {"D2"},
	}
	points := chainFixture()
	if got := Dependencies(points); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
	// the input order does not matter
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(points), func(a, b int) { points[a], points[b] = points[b], points[a] })
	if got := Dependencies(points); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("shuffled: got %v, want %v", got, want)
	}
	if g := Gaps(points); len(g) != 0 {
		t.Errorf("got gaps %v, want none", g)
	}
}

func TestRestorable(t *testing.T) {
	points := chainFixture()
	tests := []struct {
		id   string
		want []string
	}{
		{"F1", []string{"F1"}},
		{"C1", []string{"C1"}},
		{"D1", []string{"F1", "D1"}},
		{"L2", []string{"F1", "L1", "L2"}},
		{"L5", []string{"F1", "D1", "L3", "L4", "L5"}},
		{"L7", []string{"O1", "L6", "L7"}},
		{"D2", []string{"O1", "D2"}},
		{"L8", []string{"O1", "D2", "L8"}},
	}
	for _, tt := range tests {
		got, err := Restorable(points, tt.id)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Restorable(%s): got %v, %v; want %v", tt.id, got, err, tt.want)
		}
	}
	if _, err := Restorable(points, "nope"); err == nil || !strings.Contains(err.Error(), "no such recovery point") {
		t.Errorf("unknown point: got %v, want a no such recovery point error", err)
	}
}

func TestGaps(t *testing.T) {
	base := chainFixture()
	forked := Point{ID: "L9", Kind: Log, Taken: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC),
		FirstLSN: LSNFromUint64(220), LastLSN: LSNFromUint64(230), Fork: "fork-b"}
	orphanDiff := Point{ID: "D3", Kind: Differential, Taken: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC),
		FirstLSN: LSNFromUint64(300), CheckpointLSN: LSNFromUint64(300), LastLSN: LSNFromUint64(305), DifferentialBaseLSN: LSNFromUint64(999)}
	copyBased := Point{ID: "D4", Kind: Differential, Taken: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC),
		FirstLSN: LSNFromUint64(310), CheckpointLSN: LSNFromUint64(310), LastLSN: LSNFromUint64(315), DifferentialBaseLSN: LSNFromUint64(165)}
	tests := []struct {
		name       string
		points     []Point
		want       []Gap // Reason holds a substring the reason must contain
		broken     []string
		restorable []string
	}{
		{
			name:   "a missing log breaks the chain until the next full",
			points: without(base, "L4"),
			want:   []Gap{{After: "L3", Before: "L5", Reason: "begins at LSN 160, but no log ends there"}},
			// L5 needs L4; L6 onward start again from O1
			broken:     []string{"L5"},
			restorable: []string{"L3", "L6", "L7", "L8"},
		},
		{
			name:       "a missing full takes its differential down, but not the logs after a newer base",
			points:     without(base, "F1"),
			want:       []Gap{{Before: "L1", Reason: "error 4305"}, {Before: "D1", Reason: "needs the full with checkpoint LSN 100, which is missing"}},
			broken:     []string{"L1", "L2", "D1", "L3", "L5"},
			restorable: []string{"C1", "L6"},
		},
		{
			name:       "chains do not cross recovery forks",
			points:     append(slices.Clone(base), forked),
			want:       []Gap{{After: "", Before: "L9", Reason: "log L8 ends there but on another fork"}},
			broken:     []string{"L9"},
			restorable: []string{"L8"},
		},
		{
			name:   "a differential with no full, or on a copy-only full",
			points: append(slices.Clone(base), orphanDiff, copyBased),
			want: []Gap{
				{Before: "D3", Reason: "needs the full with checkpoint LSN 999, which is missing"},
				{Before: "D4", Reason: "copy-only full C1, which is never a differential base"},
			},
			broken: []string{"D3", "D4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Gaps(tt.points)
			if len(got) != len(tt.want) {
				t.Fatalf("got gaps %+v, want %d like %+v", got, len(tt.want), tt.want)
			}
			for k, g := range got {
				w := tt.want[k]
				if g.After != w.After || g.Before != w.Before || !strings.Contains(g.Reason, w.Reason) {
					t.Errorf("gap %d: got %+v, want after %q, before %q, reason containing %q", k, g, w.After, w.Before, w.Reason)
				}
			}
			for _, id := range tt.broken {
				if chain, err := Restorable(tt.points, id); !errors.Is(err, ErrBrokenChain) {
					t.Errorf("Restorable(%s): got %v, %v; want ErrBrokenChain", id, chain, err)
				} else if !strings.Contains(err.Error(), "LSN") {
					t.Errorf("Restorable(%s): got %q, want the missing LSN named", id, err)
				}
			}
			for _, id := range tt.restorable {
				if _, err := Restorable(tt.points, id); err != nil {
					t.Errorf("Restorable(%s): got %v, want a chain", id, err)
				}
			}
		})
	}
}
