package credential

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewHas256RandomBits(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := New(PrefixEnrollment)
		if !strings.HasPrefix(tok, PrefixEnrollment) {
			t.Fatalf("token %q lacks prefix", tok)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, PrefixEnrollment))
		if err != nil {
			t.Fatalf("token is not URL-safe base64: %v", err)
		}
		if len(raw) != 32 {
			t.Fatalf("token carries %d bytes, want 32", len(raw))
		}
		if seen[tok] {
			t.Fatalf("token repeated")
		}
		seen[tok] = true
	}
}

func TestEqual(t *testing.T) {
	tok := New(PrefixCollector)
	cases := []struct {
		name              string
		presented, stored string
		want              bool
	}{
		{"same", tok, tok, true},
		{"different", New(PrefixCollector), tok, false},
		{"prefix of stored", tok[:10], tok, false},
		{"empty presented", "", tok, false},
		{"empty stored never matches", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Equal(c.presented, c.stored); got != c.want {
				t.Fatalf("Equal = %v, want %v", got, c.want)
			}
		})
	}
}

func TestFingerprintDoesNotRevealToken(t *testing.T) {
	tok := New(PrefixCollector)
	fp := Fingerprint(tok)
	if len(fp) != 8 || strings.Contains(tok, fp) {
		t.Fatalf("fingerprint %q is not a short hash", fp)
	}
	if Fingerprint(tok) != fp {
		t.Fatalf("fingerprint is not stable")
	}
}
