package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	if p.Full.Frequency != Daily || p.Log.Every.D() != 15*time.Minute || p.Retention.Full != Days(30) || p.Compression != Zstd {
		t.Errorf("default policy %+v: want full daily, log every 15 minutes, 30 days, zstd", p)
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

// TestCompression: a policy names its compression, zstd when it does not;
// true and false, as policies said before a compression had a name, read
// as zstd and none; anything else is refused.
func TestCompression(t *testing.T) {
	const base = `{"name":"x","full":{"frequency":"daily","hour":3},"retention":{"full":"30d"}`
	tests := []struct {
		field     string // the "compression" member, if any
		want      Compression
		effective Compression
		invalid   bool // parses, but Validate refuses it
	}{
		{``, "", Zstd, false},
		{`"compression":null`, "", Zstd, false},
		{`"compression":"zstd"`, Zstd, Zstd, false},
		{`"compression":"s2"`, S2, S2, false},
		{`"compression":"none"`, Uncompressed, Uncompressed, false},
		{`"compression":true`, Zstd, Zstd, false},
		{`"compression":false`, Uncompressed, Uncompressed, false},
		{`"compression":"lz4"`, "lz4", "lz4", true},
		{`"compression":"S2"`, "S2", "S2", true},
		{`"compression":""`, "", Zstd, false},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			doc := base + "}"
			if tt.field != "" {
				doc = base + "," + tt.field + "}"
			}
			var p Policy
			if err := json.Unmarshal([]byte(doc), &p); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if p.Compression != tt.want || p.Compression.OrDefault() != tt.effective {
				t.Errorf("Compression = %q (effective %q); want %q (%q)", p.Compression, p.Compression.OrDefault(), tt.want, tt.effective)
			}
			err := p.Validate()
			if tt.invalid {
				if err == nil || !strings.Contains(err.Error(), "compression: ") {
					t.Errorf("Validate = %v; want compression refused", err)
				}
			} else if err != nil {
				t.Errorf("Validate = %v; want nil", err)
			}
		})
	}
	var p Policy
	if err := json.Unmarshal([]byte(base+`,"compression":3}`), &p); err == nil || !strings.Contains(err.Error(), "compression") {
		t.Errorf("a number as compression: %v; want refused", err)
	}
	for _, tt := range []struct {
		c    Compression
		want string
	}{{S2, `"compression":"s2"`}, {Uncompressed, `"compression":"none"`}, {Zstd, `"compression":"zstd"`}} {
		p := Default()
		p.Compression = tt.c
		b, err := json.Marshal(p)
		if err != nil || !strings.Contains(string(b), tt.want) {
			t.Errorf("marshalled %s, %v; want %s in it", b, err, tt.want)
		}
	}
	p = Default()
	p.Compression = ""
	if b, _ := json.Marshal(p); strings.Contains(string(b), "compression") {
		t.Errorf("marshalled %s; want no compression when it is empty", b)
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

// TestNextLogSpread: without spread every database's log slots are the
// aligned ones; with it each database keeps its own offset, a whole number
// of seconds within the interval, slots stay one interval apart, and a
// fleet's offsets cover the interval evenly.
func TestNextLogSpread(t *testing.T) {
	at := time.Date(2026, 3, 28, 12, 7, 13, 0, time.UTC)
	p := Default()
	p.Log = &LogSchedule{Every: Duration(15 * time.Minute)}
	if got, want := p.NextLogOf(at, "sql1", "Sales"), p.NextLog(at); !got.Equal(want) {
		t.Errorf("without spread: %v, want the aligned %v", got, want)
	}
	p.Log.Spread = true
	perMinute := make([]int, 15)
	for i := range 3000 {
		inst, name := fmt.Sprintf("sql%d", i%7), fmt.Sprintf("db%04d", i)
		next := p.NextLogOf(at, inst, name)
		if !next.After(at) || next.Sub(at) > 15*time.Minute {
			t.Fatalf("%s/%s: next log %v is not within an interval after %v", inst, name, next, at)
		}
		if next.Truncate(time.Second) != next {
			t.Fatalf("%s/%s: next log %v is not a whole second", inst, name, next)
		}
		if after := p.NextLogOf(next, inst, name); after.Sub(next) != 15*time.Minute {
			t.Fatalf("%s/%s: slots %v and %v are not an interval apart", inst, name, next, after)
		}
		if again := p.NextLogOf(at, inst, name); !again.Equal(next) {
			t.Fatalf("%s/%s: offset not stable: %v then %v", inst, name, next, again)
		}
		perMinute[next.Sub(next.Truncate(15*time.Minute))/time.Minute]++
	}
	for m, n := range perMinute {
		if n < 100 || n > 300 { // 200 expected in each minute
			t.Errorf("minute %d of the interval has %d of 3000 databases' logs: not spread", m, n)
		}
	}
}
