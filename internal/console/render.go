package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// refreshSeconds is how often a page without JavaScript reloads itself (<noscript> meta refresh).
const refreshSeconds = 15

// pageTemplates are the page templates, each with the layout.
var pageTemplates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"collectors", "collector", "topology", "error"} {
		out[name] = template.Must(template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}()

// staticFiles serves the embedded stylesheet and script.
var staticFiles = func() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}()

// layout is what every page shows around its content.
type layout struct {
	Title  string
	Crumbs []cell
	// Updates is the /updates URL of the page's scope.
	Updates        string
	Viewer         string
	Rendered       string
	RefreshSeconds int
	Body           any
}

// renderPage executes page's template with l into bytes, so a failure never sends half a page.
func renderPage(page string, l layout) ([]byte, error) {
	t, ok := pageTemplates[page]
	if !ok {
		return nil, fmt.Errorf("no page template %q", page)
	}
	l.RefreshSeconds = refreshSeconds
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", l); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", page, err)
	}
	return b.Bytes(), nil
}

// errorPage is the content of the error template.
type errorPage struct {
	Heading, Message string
}
