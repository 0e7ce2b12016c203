package main

import (
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/daemon"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// settingsValue is the value a declaration's flags fill: every service
// declares its settings as a daemon.Config[C].
func settingsValue(t *testing.T, s daemon.Settings) any {
	t.Helper()
	v := reflect.ValueOf(s)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct || !v.Elem().FieldByName("Value").IsValid() {
		t.Fatalf("settings %T are not a daemon.Config", s)
	}
	return v.Elem().FieldByName("Value").Interface()
}

// TestUpSettingsAreTheBinaries': for every service, the same flags and
// environment give the standalone binary and `coffer up` the same
// settings, since both register them from the service's declaration.
func TestUpSettingsAreTheBinaries(t *testing.T) {
	env := map[string]string{
		"COFFER_DISCOVERY_INTERVAL":           "45s",
		"COFFER_AUTOPROTECT_ATTEMPTS":         "7",
		"COFFER_SCHEDULER_TICK_INTERVAL":      "5s",
		"COFFER_STAGING_DIR":                  "/srv/staging",
		"COFFER_URL_LISTEN":                   ":9443",
		"COFFER_CA_DIR":                       "/srv/ca",
		"COFFER_API_TOKEN":                    "secret",
		"COFFER_GC_INTERVAL":                  "20m",
		"COFFER_NATS_URL":                     "nats://nats:4222",
		"COFFER_NATS_REPLICAS":                "3",
		"COFFER_AUTOPROTECT_INITIAL_INTERVAL": "1s",
	}
	getenv := func(k string) string { return env[k] }
	flags := map[string][]string{
		"discovery":       {"--discovery-concurrency", "9"},
		"scheduler":       {"--scheduler-max-per-instance", "3"},
		"backup-streamer": {"--workers", "5", "--url-advertise", "sql.example:9443"},
		"gateway":         {"--http", "0.0.0.0:8081"},
		"committer":       {"--gc-interval", "30m"},
		"autoprotect":     {"--autoprotect-attempts", "2"},
		"alerter":         {"--alert-interval", "30s"},
	}
	var upArgs []string
	for _, a := range flags {
		upArgs = append(upArgs, a...)
	}
	up, err := parseUpFlags(upArgs, getenv, io.Discard)
	if err != nil {
		t.Fatalf("coffer up %v: %v", upArgs, err)
	}
	if len(up.all) != len(declarations) || len(flags) != len(declarations) {
		t.Fatalf("coffer up has %d services, the test %d; want %d", len(up.all), len(flags), len(declarations))
	}
	for _, s := range up.all {
		alone, err := daemon.ParseStandalone(s.Service, flags[s.Name], getenv, io.Discard)
		if err != nil {
			t.Errorf("%s %v: %v", s.Name, flags[s.Name], err)
			continue
		}
		got, want := settingsValue(t, s.Settings), settingsValue(t, alone.Service.Settings)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: coffer up's settings %+v, the binary's %+v", s.Name, got, want)
		}
		if alone.Common.NATSURL != up.common.NATSURL || alone.Common.Replicas != up.common.Replicas {
			t.Errorf("%s: NATS %q with %d replicas, coffer up's %q with %d", s.Name, alone.Common.NATSURL, alone.Common.Replicas, up.common.NATSURL, up.common.Replicas)
		}
	}
	// a flag given wins over its variable, everywhere
	if got := settingsValue(t, up.all[1].Settings); !strings.Contains(reflect.ValueOf(got).FieldByName("URLAdvertise").String(), "sql.example") {
		t.Errorf("streamer settings %+v: want --url-advertise's value", got)
	}
}

// TestUpValidation: bad settings are refused before anything starts,
// every one named at once, and --services lists the valid names.
func TestUpValidation(t *testing.T) {
	env := map[string]string{"COFFER_DISCOVERY_TIMEOUT": "forever"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown service", []string{"--services", "scheduler,archiver,comitter"},
			[]string{`unknown service "archiver", "comitter"`, "alerter, autoprotect, backup-streamer, committer, discovery, gateway, scheduler"}},
		{"every problem at once", []string{"--workers", "0", "--replicas", "9", "--scheduler-tick-interval", "-1s"},
			[]string{"COFFER_DISCOVERY_TIMEOUT", "--workers 0", "--replicas 9", "--scheduler-tick-interval -1s"}},
		{"replicas on the embedded server", []string{"--replicas", "3"}, []string{"needs a NATS cluster"}},
		{"listen and external", []string{"--nats", "nats://x:4222", "--nats-listen", "127.0.0.1:4222"}, []string{"--nats-listen"}},
		{"demo without the gateway", []string{"--demo", "--services", "scheduler"}, []string{"--demo"}},
		{"empty list", []string{"--services", " , "}, []string{"names no service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseUpFlags(append([]string{"--data", t.TempDir()}, tt.args...), getenv, io.Discard)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("coffer up %v: got error %v, want one saying %q", tt.args, err, w)
				}
			}
		})
	}
	// an invalid setting of a service that does not run here is not its
	// business (a malformed variable is, wherever it is read)
	if _, err := parseUpFlags([]string{"--data", t.TempDir(), "--services", "scheduler", "--discovery-timeout", "-1s"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("coffer up --services scheduler with a bad discovery setting: %v", err)
	}
}

// TestUpServicesOnExternalNATS: `coffer up --services scheduler,autoprotect
// --nats URL` runs those two services, and only them, against that NATS:
// their durable consumers appear there, no other service's does, no vault
// or master key is needed and no API listens.
func TestUpServicesOnExternalNATS(t *testing.T) {
	ext, err := bus.StartEmbedded(bus.Options{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Shutdown)
	data := t.TempDir()
	c, err := parseUpFlags([]string{"--data", data, "--services", "scheduler,autoprotect", "--nats", ext.ClientURL()},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := startStack(t.Context(), c, io.Discard, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop() })
	if r.apiURL != "" || r.vault != nil || r.committer != nil || r.disc != nil || r.scheduler == nil {
		t.Errorf("running %+v: want the scheduler alone of the services it keeps, no API, no vault", r)
	}

	nc, err := nats.Connect(ext.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() map[string]bool {
		got := map[string]bool{}
		for _, stream := range []string{cofferv1.StreamEvents, cofferv1.StreamJobs, cofferv1.StreamWork} {
			s, err := b.JetStream().Stream(t.Context(), stream)
			if err != nil {
				t.Fatalf("stream %s on the external NATS: %v", stream, err)
			}
			for name := range s.ConsumerNames(t.Context()).Name() {
				got[name] = true
			}
		}
		return got
	}
	var got map[string]bool
	waitFor(t, 10*time.Second, func() bool {
		got = consumers()
		return got["scheduler"] && got["autoprotect"]
	})
	for _, want := range []string{"scheduler", "autoprotect"} {
		if !got[want] {
			t.Errorf("consumers %v on the external NATS: want %s's", got, want)
		}
	}
	for _, other := range []string{"committer", "streamer", "discovery"} {
		if got[other] {
			t.Errorf("consumers %v on the external NATS: %s does not run here", got, other)
		}
	}
}

// TestUpFlagsNameTheirVariables: every setting of `coffer up` and of each
// binary can also be set by the COFFER_* variable its usage names.
func TestUpFlagsNameTheirVariables(t *testing.T) {
	check := func(who string, args func(io.Writer) error) {
		var help strings.Builder
		if err := args(&help); err == nil {
			t.Fatalf("%s -help: got nil error", who)
		}
		lines := strings.Split(help.String(), "\n")
		n := 0
		for i, l := range lines {
			if !strings.HasPrefix(l, "  -") || i+1 == len(lines) {
				continue
			}
			n++
			if !strings.Contains(lines[i+1], "(COFFER_") {
				t.Errorf("%s: flag %s names no COFFER_ variable: %q", who, strings.Fields(l)[0], lines[i+1])
			}
		}
		if n == 0 {
			t.Errorf("%s -help lists no flag: %q", who, help.String())
		}
	}
	check("coffer up", func(w io.Writer) error {
		_, err := parseUpFlags([]string{"-help"}, func(string) string { return "" }, w)
		return err
	})
	for _, d := range declarations {
		check(d.Name, func(w io.Writer) error {
			_, err := daemon.ParseStandalone(d, []string{"-help"}, func(string) string { return "" }, w)
			return err
		})
	}
}
