package gateway_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/policy"
	"github.com/cofferhq/coffer/services/gateway"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

// TestOpenAPI: the OpenAPI document served is the routes the gateway
// serves, no more, no fewer, each with its role; every reference in it
// resolves; and its schemas have the fields of the Go types the API
// encodes.
func TestOpenAPI(t *testing.T) {
	e := newEnv(t, "")
	status, body := e.do(t, "GET", "/api/v1/openapi.json", "", "")
	if status != 200 {
		t.Fatalf("GET openapi.json: %d %s", status, body)
	}
	var doc openAPIDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	served := map[string]gateway.Role{}
	for _, rt := range gateway.Routes() {
		served[rt.Method+" "+rt.Pattern] = rt.Role
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for method, raw := range ops {
			key := strings.ToUpper(method) + " " + p
			documented[key] = true
			role, ok := served[key]
			if !ok {
				t.Errorf("%s is documented but not served", key)
				continue
			}
			var op struct {
				Role string `json:"x-coffer-role"`
			}
			json.Unmarshal(raw, &op)
			if op.Role != role.String() {
				t.Errorf("%s: documented role %q, served to %s", key, op.Role, role)
			}
		}
	}
	for key := range served {
		if !documented[key] {
			t.Errorf("%s is served but not in the OpenAPI document", key)
		}
	}
	// every route is really served: the mux answers neither 404 page not
	// found nor 405 for it
	for _, rt := range gateway.Routes() {
		path := strings.NewReplacer("{name}", "x", "{id}", "x").Replace(rt.Pattern)
		status, body := e.do(t, rt.Method, path, "{}", "")
		if status == http.StatusMethodNotAllowed || strings.HasPrefix(body, "404 page not found") {
			t.Errorf("%s %s: %d %s: the mux does not serve it", rt.Method, rt.Pattern, status, body)
		}
	}
	for _, ref := range refs(body) {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if !ok {
			if ref != "#/components/responses/Error" {
				t.Errorf("unexpected reference %s", ref)
			}
			continue
		}
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("reference %s resolves to nothing", ref)
		}
	}
	types := []any{gateway.Error{}, gateway.ErrorBody{}, gateway.Instance{}, gateway.AddInstance{}, gateway.URLCheck{}, gateway.Autoprotect{},
		gateway.Database{}, gateway.DatabaseRequest{}, gateway.BackupRequest{}, gateway.RecoveryPoint{}, gateway.RecoveryPointsRequest{},
		gateway.RecoveryRange{}, gateway.RestoreRequest{}, gateway.Accepted{}, gateway.PlanStep{}, gateway.VerifyRequest{}, gateway.Verification{},
		gateway.RebuildRequest{}, gateway.Job{}, gateway.JobStep{}, gateway.JobLogLine{}, gateway.Login{}, gateway.Whoami{}, gateway.User{}, gateway.Token{}, gateway.AddUser{},
		gateway.NewToken{}, gateway.AuditEntry{}, gateway.Alert{}, gateway.AlertRules{}, gateway.AlertRule{}, gateway.AlertChannel{},
		policy.Policy{}}
	for _, v := range types {
		typ := reflect.TypeOf(v)
		sc, ok := doc.Components.Schemas[typ.Name()]
		if !ok {
			t.Errorf("no schema %s", typ.Name())
			continue
		}
		var want, got []string
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
				want = append(want, cmpOr(strings.Split(f.Tag.Get("json"), ",")[0], f.Name))
			}
		}
		for p := range sc.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v; the Go type has %v", typ.Name(), got, want)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// refs are the "$ref" values of a JSON document.
func refs(doc string) []string {
	var out []string
	for _, part := range strings.Split(doc, `"$ref": "`)[1:] {
		out = append(out, part[:strings.IndexByte(part, '"')])
	}
	return out
}
