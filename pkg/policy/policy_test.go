package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	if p.Full.Frequency != Daily || p.Log.Every.D() != 15*time.Minute || p.Retention.Full != Days(30) {
		t.Errorf("default policy %+v: want full daily, log every 15 minutes, 30 days", p)
	}
}

// TestValidateNamesEveryProblem: an invalid policy is refused with every
// problem named at once.
func TestValidateNamesEveryProblem(t *testing.T) {
	sunday := time.Sunday
	p := Policy{
		Name:         "bad/name",
		TimeZone:     "Mars/Olympus",
		Full:         Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 25},
		Differential: &Schedule{Days: []time.Weekday{time.Sunday, time.Monday}, Hour: 1},
		Log:          &LogSchedule{Every: Duration(30 * time.Second)},
		Retention: Retention{Full: Days(3), Differential: Days(60), Log: Days(6),
			Weekly: &WeeklyRange{Day: time.Saturday, Count: 4}, Monthly: &MonthlyRange{Day: &sunday, Count: 0}},
	}
	err := p.Validate()
	if err == nil {
		t.Fatal("an invalid policy was accepted")
	}
	for _, want := range []string{
		"name:", "time_zone:", "full.hour:", "differential.days: Sunday is a full's day", "log.every:",
		"retention.full: 3d is shorter than the minimum", "retention.log: 6d is shorter",
		"retention.differential: 60d is longer than any full", "retention.weekly.day: no full runs on Saturday",
		"retention.monthly.count",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	ok := []Policy{
		{Name: "weekly-gfs", TimeZone: "Europe/Berlin", Full: Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 2},
			Differential: &Schedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday}, Hour: 2},
			Log:          &LogSchedule{Every: Duration(time.Minute)},
			Retention: Retention{Full: Days(14), Differential: Days(14), Log: Days(14),
				Weekly: &WeeklyRange{Day: time.Sunday, Count: 8}, Monthly: &MonthlyRange{Count: 12}, Yearly: &YearlyRange{Month: time.January, Count: 3}}},
		// past the reference product: a differential with daily fulls, at another hour
		{Name: "daily-diff", Full: Schedule{Frequency: Daily, Hour: 1}, Differential: &Schedule{Days: []time.Weekday{time.Monday}, Hour: 13},
			Retention: Retention{Full: Days(7), Differential: Days(7)}},
	}
	for _, p := range ok {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var p Policy
	if err := json.Unmarshal([]byte(`{"name":"x","full":{"frequency":"daily","hour":3},"log":{"every":"5m"},"retention":{"full":"30d","log":"2w"}}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.Log.Every.D() != 5*time.Minute || p.Retention.Full != Days(30) || p.Retention.Log != Days(14) {
		t.Errorf("parsed %+v", p)
	}
	b, _ := json.Marshal(p.Retention)
	if !strings.Contains(string(b), `"full":"30d"`) {
		t.Errorf("marshalled %s", b)
	}
	if _, err := ParseDuration("3x"); err == nil {
		t.Error("3x parsed")
	}
}

func TestDueTimes(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	p := Policy{Name: "p", TimeZone: "Europe/Berlin",
		Full:         Schedule{Frequency: Weekly, Days: []time.Weekday{time.Sunday}, Hour: 2, Minute: 30},
		Differential: &Schedule{Days: []time.Weekday{time.Monday, time.Thursday}, Hour: 21},
		Log:          &LogSchedule{Every: Duration(15 * time.Minute)}}
	// Saturday 2026-03-28 12:00 Berlin; the next Sunday is the spring
	// change: 02:30 does not exist and becomes 03:30 CEST
	sat := time.Date(2026, 3, 28, 12, 0, 0, 0, berlin)
	tests := []struct {
		name string
		got  time.Time
		want time.Time
	}{
		{"next full over the spring change", p.NextFull(sat), time.Date(2026, 3, 29, 3, 30, 0, 0, berlin)},
		{"last full", p.LastFull(sat), time.Date(2026, 3, 22, 2, 30, 0, 0, berlin)},
		{"next differential", p.NextDifferential(sat), time.Date(2026, 3, 30, 21, 0, 0, 0, berlin)},
		{"last differential", p.LastDifferential(sat), time.Date(2026, 3, 26, 21, 0, 0, 0, berlin)},
		{"next log", p.NextLog(time.Date(2026, 3, 28, 12, 7, 0, 0, time.UTC)), time.Date(2026, 3, 28, 12, 15, 0, 0, time.UTC)},
		{"next log at a slot", p.NextLog(time.Date(2026, 3, 28, 12, 15, 0, 0, time.UTC)), time.Date(2026, 3, 28, 12, 30, 0, 0, time.UTC)},
		{"last log", p.LastLog(time.Date(2026, 3, 28, 12, 29, 59, 0, time.UTC)), time.Date(2026, 3, 28, 12, 15, 0, 0, time.UTC)},
		{"daily next", (&Policy{Full: Schedule{Frequency: Daily, Hour: 22}}).NextFull(time.Date(2026, 1, 1, 22, 0, 0, 0, time.UTC)),
			time.Date(2026, 1, 2, 22, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		if !tt.got.Equal(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if d := (&Policy{}).NextDifferential(sat); !d.IsZero() {
		t.Errorf("no differential schedule: got %v", d)
	}
}
