package event

import (
	"testing"
	"time"
)

// TestDerivedJobTime: the time a derived job id was made from comes back
// to the second; ids of other forms give none.
func TestDerivedJobTime(t *testing.T) {
	at := time.Date(2026, 12, 2, 17, 54, 15, 700, time.UTC)
	got, ok := DerivedJobTime(DerivedJobID(at, "scheduled", "sql1", "Sales"))
	if !ok || !got.Equal(at.Truncate(time.Second)) {
		t.Errorf("DerivedJobTime(DerivedJobID(%v)) = %v, %v", at, got, ok)
	}
	for _, id := range []string{"", "j", "ondemand-123", "j20261202T1754-abcdef01", "x20261202T175415-abcdef01", "j2026120XT175415-abcdef01"} {
		if got, ok := DerivedJobTime(id); ok {
			t.Errorf("DerivedJobTime(%q) = %v, want none", id, got)
		}
	}
}
