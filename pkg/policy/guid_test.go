package policy

import (
	"slices"
	"testing"
	"time"
)

// TestDifferentialLinkedByGUID: a transaction open across a full puts the
// differential base past the full's checkpoint, so the LSNs do not link a
// differential to its full; the GUIDs do. Points recorded before coffer
// kept backup set GUIDs still link by LSN.
func TestDifferentialLinkedByGUID(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	lsn := func(n uint64) LSN { return LSN{lo: n} }
	full := Point{ID: "F", Kind: Full, Taken: t0, FirstLSN: lsn(90), CheckpointLSN: lsn(100), LastLSN: lsn(110), BackupSetGUID: "a-guid"}
	diff := Point{ID: "D", Kind: Differential, Taken: t0.Add(time.Hour), FirstLSN: lsn(200), CheckpointLSN: lsn(200), LastLSN: lsn(210),
		DifferentialBaseLSN: lsn(101), DifferentialBaseGUID: "A-GUID"}
	for _, c := range []struct {
		name       string
		full, diff Point
		want       []string
		fails      bool
	}{
		{"by GUID, base past the checkpoint", full, diff, []string{"F", "D"}, false},
		{"older points: by LSN", withGUIDs(full, "", ""), withBase(withGUIDs(diff, "", ""), lsn(100)), []string{"F", "D"}, false},
		{"another full's GUID", withGUIDs(full, "other", ""), withBase(diff, lsn(100)), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Restorable([]Point{c.full, c.diff}, "D")
			if c.fails {
				if err == nil {
					t.Fatalf("got plan %v; want the differential refused", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func withGUIDs(p Point, set, base string) Point {
	p.BackupSetGUID, p.DifferentialBaseGUID = set, base
	return p
}

func withBase(p Point, l LSN) Point {
	p.DifferentialBaseLSN = l
	return p
}
