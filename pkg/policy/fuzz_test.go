package policy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzPolicy decodes arbitrary JSON as the gateway decodes a policy put
// through the API: a policy that Validate accepts encodes and decodes to
// itself, its due times come after the time asked and within the period
// they repeat in, and its retention ranges are honoured in full: by
// Validate's longest retention of a full (a time.Duration, which a range
// past 292 years made wrap around) and by Expiry.
func FuzzPolicy(f *testing.F) {
	def, _ := json.Marshal(Default())
	f.Add(def, int64(0))
	f.Add([]byte(`{"name":"gfs","time_zone":"Europe/Berlin","full":{"frequency":"weekly","days":[0,3],"hour":2,"minute":30},
		"differential":{"days":[1,2,4,5,6],"hour":2},"log":{"every":"5m","spread":true},
		"retention":{"full":"14d","weekly":{"day":0,"count":8},"monthly":{"count":12},"yearly":{"month":1,"count":7},"differential":"7d","log":"2w"},
		"compression":true,"on_demand":{"full":"45d"},"verify":{"days":[6],"hour":5}}`), int64(1798761600))
	f.Add([]byte(`{"name":"x","full":{"frequency":"daily"},"retention":{"full":"9223372036854775807d","yearly":{"month":3,"count":9223372036854775807}}}`), int64(-1))
	f.Add([]byte(`{"name":"y","full":{"frequency":"daily","hour":23,"minute":59},"retention":{"full":"7d","weekly":{"day":6,"count":15251}}}`), int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, unix int64) {
		var p Policy
		if json.Unmarshal(b, &p) != nil || p.Validate() != nil {
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("a valid policy does not encode: %v", err)
		}
		var p2 Policy
		if err := json.Unmarshal(again, &p2); err != nil || p2.Validate() != nil {
			t.Fatalf("valid policy %s decodes to %+v, %v; want it valid", again, p2, err)
		}
		if again2, _ := json.Marshal(p2); !bytes.Equal(again, again2) {
			t.Fatalf("policy %s decodes and encodes to %s", again, again2)
		}
		// a moment within a few centuries of now, as the scheduler asks
		now := time.Unix(1798761600+unix%(300*365*86400), 0).UTC()
		if n := p.NextFull(now); !n.After(now) || n.Sub(now) > 8*24*time.Hour {
			t.Fatalf("NextFull(%s) = %s", now, n)
		}
		if l := p.LastFull(now); l.After(now) {
			t.Fatalf("LastFull(%s) = %s, after it", now, l)
		}
		if p.Log != nil {
			if n := p.NextLogOf(now, "sql01", "db"); !n.After(now) || n.Sub(now) > p.Log.Every.D() {
				t.Fatalf("NextLogOf(%s) = %s with logs every %s", now, n, p.Log.Every)
			}
		}
		if p.Differential != nil {
			if n := p.NextDifferential(now); !n.After(now) || n.Sub(now) > 8*24*time.Hour {
				t.Fatalf("NextDifferential(%s) = %s", now, n)
			}
		}
		full := p.NextFull(now)
		expires, tags := p.Expiry(Point{ID: "f", Kind: Full, Taken: full}, nil)
		kept := expires.Sub(full).Hours()
		want := map[string]float64{TagDaily: max(p.Retention.Full.D(), MinRetention).Hours()}
		if r := p.Retention.Weekly; r != nil {
			want[TagWeekly] = float64(r.Count) * 7 * 24
		}
		if r := p.Retention.Monthly; r != nil {
			want[TagMonthly] = float64(r.Count) * 28 * 24
		}
		if r := p.Retention.Yearly; r != nil {
			want[TagYearly] = float64(r.Count) * 365 * 24
		}
		for tag, hours := range want {
			if longest := p.Retention.longestFull().Hours(); longest < hours {
				t.Fatalf("the longest a full is kept is %.0f hours, less than the %.0f its %s range asks", longest, hours, tag)
			}
		}
		for _, tag := range tags {
			// an hour's slack for a daylight-saving change
			if kept < want[tag]-1 {
				t.Fatalf("a %s full taken %s expires %s: kept %.0f hours, less than the %.0f its range asks", strings.Join(tags, "+"), full, expires, kept, want[tag])
			}
		}
	})
}

// FuzzParseDuration reads arbitrary durations: one that parses prints as
// a duration that parses to it again, and a count of days or weeks is
// exactly that many, never wrapped around.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30d", "2w", "15m", "1h30m", " 7d ", "-3d", "106751d", "106752d", "15250w", "9223372036854775807d", "0d", "1.5d", "3dw"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d2, err := ParseDuration(d.String()); err != nil || d2 != d {
			t.Fatalf("ParseDuration(%q) = %s, which parses to %s, %v", s, d, d2, err)
		}
		trimmed := strings.TrimSpace(s)
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[trimmed[len(trimmed)-1]]
		if unit == 0 {
			return
		}
		num := trimmed[:len(trimmed)-1]
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || d.D()%unit != 0 || int64(d.D()/unit) != n {
			t.Fatalf("ParseDuration(%q) = %s: not %s units of %s", s, d, num, unit)
		}
	})
}
