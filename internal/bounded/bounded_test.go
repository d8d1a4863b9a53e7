package bounded

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short stays", "abc", 3, "abc"},
		{"cut with ellipsis", "abcdefgh", 6, "abc..."},
		{"no split rune", "ab€def", 6, "ab..."},
		{"tiny bound", "abcdef", 2, "ab"},
		{"tiny bound, no split rune", "€€", 2, ""},
		{"empty", "", 0, ""},
		{"two-byte runes", strings.Repeat("ü", 10), 10, "üüü..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Truncate(tc.in, tc.n)
			if got != tc.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
			if len(got) > tc.n && len(tc.in) > tc.n {
				t.Fatalf("Truncate(%q, %d) = %q is longer than the bound", tc.in, tc.n, got)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("Truncate(%q, %d) = %q is not valid UTF-8", tc.in, tc.n, got)
			}
		})
	}
	long := strings.Repeat("ü", 1000)
	if got := Truncate(long, 1024); len(got) > 1024 || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Fatalf("a long multi-byte string is cut to %d bytes, valid=%v", len(got), utf8.ValidString(got))
	}
}
