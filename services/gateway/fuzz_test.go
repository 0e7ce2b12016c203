package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/cofferhq/coffer/pkg/bus"
	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/pkg/topology/topologytest"
	"github.com/cofferhq/coffer/services/gateway"
)

// bodyRoutes are the API's requests that carry a JSON body (check-url
// left out: it connects to the URL it is given).
var bodyRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/instances"},
	{"PUT", "/api/v1/instances/sql1/autoprotect"},
	{"POST", "/api/v1/protect"},
	{"POST", "/api/v1/unprotect"},
	{"POST", "/api/v1/backups"},
	{"POST", "/api/v1/restores"},
	{"POST", "/api/v1/verifications"},
	{"PUT", "/api/v1/policies/gold"},
}

// FuzzRequestBodies sends arbitrary bodies to every request of the API
// that takes one, on a gateway with a real bus and catalog: the answer is
// never a server error and always JSON, a body is accepted only when it
// is one JSON value, and a policy only when it is valid.
func FuzzRequestBodies(f *testing.F) {
	n := topologytest.Start(f, bus.Config{})
	gw, err := gateway.New(n.Bus, n.Catalog, gateway.Config{MasterKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		f.Fatal(err)
	}
	h := gw.Handler()
	gold, _ := json.Marshal(policy.Policy{Name: "gold", Full: policy.Schedule{Frequency: policy.Daily, Hour: 1},
		Retention: policy.Retention{Full: policy.Days(30)}})
	for i, body := range []string{
		`{"name":"sql1","dsn":"sqlserver://sa:x@h","mode":"url"}`,
		`{"enabled":true,"policy":"default"}`,
		`{"instance":"sql1","database":"d","policy":"gold"}`,
		`{"instance":"sql1","database":"d"}`,
		`{"instance":"sql1","database":"d","type":"full"}`,
		`{"instance":"sql1","database":"d","latest":true,"target_database":"c"}`,
		`{"instance":"sql1","database":"d","scratch_instance":"sql2"}`,
		string(gold),
	} {
		f.Add(uint8(i), []byte(body))
		f.Add(uint8(i), []byte(body+` {}`))
		f.Add(uint8(i+1), []byte(body))
	}
	f.Add(uint8(0), []byte(`{"name":"a/b","dsn":"x"}`))
	f.Add(uint8(0), []byte(`{"name":"sql1","dsn":"sqlserver://sa:x@h:99999?database=%zz"}`))
	f.Add(uint8(5), []byte(`{"instance":"sql1","database":"d","time":"2026-13-01T00:00:00Z","target_database":"c"}`))
	f.Add(uint8(7), []byte(`{"name":"gold","full":{"frequency":"daily"},"retention":{"full":"106752d"}}`))
	f.Add(uint8(7), []byte(`[`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		route := bodyRoutes[int(which)%len(bodyRoutes)]
		w := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(t.Context(), route.method, route.path, bytes.NewReader(body))
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", route.method, route.path, body, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d answered with %q, not JSON", route.method, route.path, body, w.Code, w.Body)
		}
		if w.Code >= 300 {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("%s %s accepted %q, which is not one JSON value: %d %s", route.method, route.path, body, w.Code, w.Body)
		}
		if route.path == "/api/v1/policies/gold" {
			var p policy.Policy
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("accepted policy %q does not decode: %v", body, err)
			}
			if p.Name == "" {
				p.Name = "gold"
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted policy %q is invalid: %v", body, err)
			}
		}
	})
}
