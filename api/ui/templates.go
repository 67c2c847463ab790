package ui

import (
	"fmt"
	"html/template"
)

// pageNames are the pages; each is the layout plus templates/<name>.html.
var pageNames = []string{"signin", "search", "artifact", "decisions", "keys", "log"}

var funcs = template.FuncMap{
	"add": func(a, b int) int { return a + b },
	"mul": func(a, b int) int { return a * b },
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}
