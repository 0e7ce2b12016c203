package gateway

import (
	"net/http"
	"strings"
)

// route is one endpoint: how it is served and the least role that may
// call it. The table below is the one place the gateway's endpoints are
// declared: Handler registers each, and TestOpenAPI compares it with the
// OpenAPI document (openapi.json), so that neither can drift from what
// is served.
type route struct {
	method, pattern string
	// role is the least role allowed; RolePublic lets anyone call, signed
	// in or not.
	role    Role
	handler func(*Service, http.ResponseWriter, *http.Request)
}

// routes are every endpoint the gateway serves.
var routes = []route{
	{"GET", "/healthz", RolePublic, (*Service).healthz},
	{"GET", "/", RolePublic, (*Service).dashboard},
	{"GET", "/ui/{file...}", RolePublic, (*Service).uiAsset},
	{"GET", "/metrics", RoleViewer, (*Service).metrics},
	{"GET", "/api/v1/openapi.json", RolePublic, (*Service).openAPI},

	{"POST", "/api/v1/login", RolePublic, (*Service).login},
	{"POST", "/api/v1/logout", RolePublic, (*Service).logout},
	{"GET", "/api/v1/whoami", RoleViewer, (*Service).whoami},

	{"GET", "/api/v1/instances", RoleViewer, (*Service).listInstances},
	{"POST", "/api/v1/instances", RoleAdmin, (*Service).addInstance},
	{"POST", "/api/v1/instances/{name}/discover", RoleOperator, (*Service).discover},
	{"POST", "/api/v1/instances/{name}/check-url", RoleOperator, (*Service).checkURL},
	{"PUT", "/api/v1/instances/{name}/autoprotect", RoleAdmin, (*Service).autoprotect},

	{"GET", "/api/v1/databases", RoleViewer, (*Service).listDatabases},
	{"POST", "/api/v1/protect", RoleOperator, (*Service).protect},
	{"POST", "/api/v1/unprotect", RoleAdmin, (*Service).unprotect},
	{"POST", "/api/v1/backups", RoleOperator, (*Service).backup},

	{"GET", "/api/v1/recovery-points", RoleViewer, (*Service).listRecoveryPoints},
	{"POST", "/api/v1/recovery-points/delete", RoleAdmin, (*Service).deleteRecoveryPoints},
	{"DELETE", "/api/v1/recovery-points/{id}", RoleAdmin, (*Service).deleteRecoveryPoints},
	{"POST", "/api/v1/recovery-points/undelete", RoleOperator, (*Service).undeleteRecoveryPoints},
	{"GET", "/api/v1/recovery-ranges", RoleViewer, (*Service).listRanges},
	// an operator restores to a new name; an overwrite needs an admin
	// (restore checks it)
	{"POST", "/api/v1/restores", RoleOperator, (*Service).restore},
	{"POST", "/api/v1/verifications", RoleOperator, (*Service).verify},
	{"POST", "/api/v1/catalog/rebuild", RoleAdmin, (*Service).rebuild},
	{"GET", "/api/v1/vaults", RoleViewer, (*Service).listVaults},
	{"POST", "/api/v1/vaults", RoleAdmin, (*Service).createVault},

	{"GET", "/api/v1/jobs", RoleViewer, (*Service).listJobs},
	{"GET", "/api/v1/jobs/{id}", RoleViewer, (*Service).getJob},
	{"POST", "/api/v1/jobs/{id}/cancel", RoleOperator, (*Service).cancelJob},

	{"GET", "/api/v1/alerts", RoleViewer, (*Service).listAlerts},
	{"GET", "/api/v1/alerts/rules", RoleViewer, (*Service).listAlertRules},

	{"GET", "/api/v1/policies", RoleViewer, (*Service).listPolicies},
	{"GET", "/api/v1/policies/{name}", RoleViewer, (*Service).getPolicy},
	{"PUT", "/api/v1/policies/{name}", RoleAdmin, (*Service).putPolicy},
	{"DELETE", "/api/v1/policies/{name}", RoleAdmin, (*Service).deletePolicy},

	{"GET", "/api/v1/users", RoleAdmin, (*Service).listUsers},
	{"POST", "/api/v1/users", RoleAdmin, (*Service).addUser},
	{"DELETE", "/api/v1/users/{name}", RoleAdmin, (*Service).deleteUser},
	{"POST", "/api/v1/users/{name}/tokens", RoleAdmin, (*Service).addToken},
	{"DELETE", "/api/v1/users/{name}/tokens/{id}", RoleAdmin, (*Service).deleteToken},
	{"GET", "/api/v1/audit", RoleAdmin, (*Service).listAudit},
}

// Handler returns the HTTP handler of the API and the dashboard.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		pattern := rt.pattern
		if pattern == "/" {
			pattern = "/{$}" // the dashboard alone, not every unknown path
		}
		h := s.guard(rt)
		if rt.method == http.MethodGet && strings.HasPrefix(pattern, "/api/") {
			h = etagged(h)
		}
		mux.Handle(rt.method+" "+pattern, h)
	}
	return s.traced(mux)
}

// guard serves a route to the callers its role allows: it authenticates
// the caller, refuses one whose role is too low (401 when not signed
// in, 403 otherwise), and writes every request that may change something
// to the audit log.
func (s *Service) guard(rt route) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.handler(s, w, r) })
	audited := rt.method != http.MethodGet
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		r = r.WithContext(withPrincipal(r.Context(), p))
		if audited {
			s.audited(w, r, p, func(w http.ResponseWriter, r *http.Request) { s.authorize(w, r, rt, p, h) })
			return
		}
		s.authorize(w, r, rt, p, h)
	})
}

// authorize serves h to p when its role allows rt.
func (s *Service) authorize(w http.ResponseWriter, r *http.Request, rt route, p Principal, h http.Handler) {
	switch {
	case rt.role == RolePublic:
	case p.Role == RolePublic:
		writeError(w, http.StatusUnauthorized, "%s", p.refusal)
		return
	case p.Role < rt.role:
		writeError(w, http.StatusForbidden, "%s %s needs the %s role; %s is %s", rt.method, rt.pattern, rt.role, p.Name, p.Role)
		return
	case p.csrfMissing && rt.method != http.MethodGet:
		writeError(w, http.StatusForbidden, "a change made with a session cookie needs the X-Coffer-CSRF header the sign-in returned")
		return
	}
	h.ServeHTTP(w, r)
}

func (s *Service) healthz(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }

// metrics serves the process's metrics, when there are any here.
func (s *Service) metrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "this gateway serves no metrics")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

// Route is one endpoint as Routes lists it.
type Route struct {
	Method, Pattern string
	// Role is the least role that may call it.
	Role Role
}

// Routes lists every endpoint the gateway serves, with its role.
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, rt := range routes {
		out[i] = Route{Method: rt.method, Pattern: rt.pattern, Role: rt.role}
	}
	return out
}
