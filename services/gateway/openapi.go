package gateway

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3 document of the API. TestOpenAPI checks it
// against the routes table: every route documented, every documented
// route served, with the same role.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

func (s *Service) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}
