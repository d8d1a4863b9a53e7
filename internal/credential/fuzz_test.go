package credential

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzBearer parses arbitrary Authorization headers, one or two of them, and checks what Bearer lets
// through: only from exactly one header with the Bearer scheme, a token that is non-empty, within
// MaxTokenLen, without blanks around or inside it, and that parses back to itself. Seeds:
// testdata/fuzz/FuzzBearer and the headers below.
func FuzzBearer(f *testing.F) {
	for _, h := range []string{"Bearer lmc_abc", "bearer lmc_abc", " Bearer  lmc_abc ", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer a b", ""} {
		f.Add(h, "", false)
	}
	f.Add("Bearer a", "Bearer b", true)

	f.Fuzz(func(t *testing.T, header, second string, twice bool) {
		r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Add("Authorization", header)
		if twice {
			r.Header.Add("Authorization", second)
		}
		token, ok := Bearer(r)
		if !ok {
			if token != "" {
				t.Fatalf("no token, but %q", token)
			}
			return
		}
		switch {
		case twice:
			t.Fatalf("a token %q from two Authorization headers", token)
		case token == "" || len(token) > MaxTokenLen:
			t.Fatalf("a token of %d bytes", len(token))
		case strings.ContainsAny(token, " \t") || strings.TrimSpace(token) != token:
			t.Fatalf("a token with blanks: %q", token)
		case !strings.HasPrefix(strings.ToLower(strings.TrimSpace(header)), "bearer "):
			t.Fatalf("a token %q from %q, which is not the Bearer scheme", token, header)
		}
		again, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		again.Header.Set("Authorization", "Bearer "+token)
		if got, ok := Bearer(again); !ok || got != token {
			t.Fatalf("token %q parses back as %q, %v", token, got, ok)
		}
	})
}
