package credential

import (
	"net/http"
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
		ok      bool
	}{
		{"bearer", []string{"Bearer lmc_abc"}, "lmc_abc", true},
		{"scheme is case-insensitive", []string{"bearer lmc_abc"}, "lmc_abc", true},
		{"surrounding whitespace", []string{" Bearer  lmc_abc "}, "lmc_abc", true},
		{"no header", nil, "", false},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", false},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", false},
		{"no token", []string{"Bearer "}, "", false},
		{"scheme only", []string{"Bearer"}, "", false},
		{"space inside", []string{"Bearer a b"}, "", false},
		{"tab inside", []string{"Bearer a\tb"}, "", false},
		{"overlong", []string{"Bearer " + strings.Repeat("x", MaxTokenLen+1)}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			got, ok := Bearer(r)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Bearer(%q) = %q, %v; want %q, %v", tc.headers, got, ok, tc.want, tc.ok)
			}
		})
	}
}
