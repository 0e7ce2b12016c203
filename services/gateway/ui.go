package gateway

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sync"
	"time"
)

// uiFiles are the web dashboard: index.html, the application's ES
// modules and style, and the front-end libraries vendored under
// ui/vendor (scripts/vendor-ui.sh), so that building coffer needs no npm.
//
//go:embed ui
var uiFiles embed.FS

// uiCSP is the dashboard's Content-Security-Policy: scripts from the
// gateway alone, plus the inline import map of index.html, allowed by
// its hash.
var uiCSP = sync.OnceValue(func() string {
	index, _ := uiFiles.ReadFile("ui/index.html")
	csp := "default-src 'self'; script-src 'self'"
	const open, end = `<script type="importmap">`, `</script>`
	if _, rest, ok := bytes.Cut(index, []byte(open)); ok {
		if importMap, _, ok := bytes.Cut(rest, []byte(end)); ok {
			sum := sha256.Sum256(importMap)
			csp += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		}
	}
	return csp + "; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
})

// dashboard serves the web dashboard's page; the application in it
// reads the API and routes between its pages itself (#/databases).
func (s *Service) dashboard(w http.ResponseWriter, r *http.Request) {
	s.uiFile(w, r, "index.html")
}

// uiAsset serves one file of the dashboard: a module, the style, a
// vendored library or its licence.
func (s *Service) uiAsset(w http.ResponseWriter, r *http.Request) {
	s.uiFile(w, r, r.PathValue("file"))
}

func (s *Service) uiFile(w http.ResponseWriter, r *http.Request, name string) {
	clean := path.Clean("/" + name)[1:]
	b, err := fs.ReadFile(uiFiles, "ui/"+clean)
	if err != nil || clean == "" {
		writeError(w, http.StatusNotFound, "the dashboard has no file %q", name)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(clean))
	switch path.Ext(clean) {
	case ".mjs", ".js":
		ctype = "text/javascript; charset=utf-8"
	case "":
		ctype = "text/plain; charset=utf-8" // the licences, VERSIONS
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Security-Policy", uiCSP())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// the files change only with the binary: revalidate, by their hash
	sum := sha256.Sum256(b)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", `"`+base64.RawURLEncoding.EncodeToString(sum[:16])+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}
