package policy

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestOrphans(t *testing.T) {
	tests := []struct {
		gone []string
		want []string
	}{
		// D1 is F1's differential; the logs from L1 on start at F1, and
		// no earlier full or log chain reaches them
		{gone: []string{"F1"}, want: []string{"L1", "L2", "D1", "L3", "L4", "L5"}},
		// L3 is reached from L2 through the log chain instead
		{gone: []string{"D1"}},
		{gone: []string{"L1"}, want: []string{"L2"}},
		// L3's base is D1, not L2
		{gone: []string{"L2"}},
		// D2 is O1's differential; L8 continues L7 without it
		{gone: []string{"O1"}, want: []string{"D2"}},
		{gone: []string{"L8"}},
		// a point named twice, or one that is not there, changes nothing
		{gone: []string{"L8", "L8", "nope"}},
	}
	for _, tt := range tests {
		if got := Orphans(chainFixture(), tt.gone); !slices.Equal(got, tt.want) {
			t.Errorf("Orphans(%v): got %v, want %v", tt.gone, got, tt.want)
		}
	}
}

func TestLive(t *testing.T) {
	rps := []*cofferv1.RecoveryPoint{{Id: "a"}, {Id: "b", DeletedAt: timestamppb.New(time.Unix(1, 0))}, {Id: "c"}}
	var got []string
	for _, rp := range Live(rps) {
		got = append(got, rp.GetId())
	}
	if want := []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
