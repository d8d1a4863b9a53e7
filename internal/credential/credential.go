// Package credential mints and compares the bearer tokens the operator hands out: collector credentials,
// own-metrics tokens and enrollment tokens.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// Prefixes make a leaked token recognizable to secret scanners and to a human reading a config file.
const (
	PrefixCollector  = "lmc_"
	PrefixOwnMetrics = "lmm_"
	PrefixEnrollment = "lme_"
)

// entropyBytes is 256 bits, the minimum for any token the operator hands out.
const entropyBytes = 32

// New returns prefix followed by 256 random bits from crypto/rand, base64url-encoded without padding.
func New(prefix string) string {
	b := make([]byte, entropyBytes)
	// crypto/rand.Read never returns an error on supported platforms; it crashes the program instead.
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Equal compares a presented token with a stored one in constant time.
func Equal(presented, stored string) bool {
	if stored == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(presented), []byte(stored)) == 1
}

// Fingerprint is a short, non-reversible identifier of a token, safe for logs: the first 8 hex digits of
// its sha256.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}
