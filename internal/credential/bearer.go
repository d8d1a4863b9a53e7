package credential

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
)

// MaxTokenLen bounds a presented token; ours are 47 bytes.
const MaxTokenLen = 512

// ErrUnauthorized is every authentication failure: the client learns nothing about which check failed.
var ErrUnauthorized = errors.New("unauthorized")

// Bearer is the token of the request's one "Authorization: Bearer <token>" header. Several Authorization
// headers, another scheme, an empty or overlong token, or whitespace inside it are no token at all.
func Bearer(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > MaxTokenLen ||
		strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Refuse answers a request whose authentication failed and says whether it did: 401 with no detail for a
// bad credential, so a guesser learns nothing about which check failed, and 503 with Retry-After when the
// cache failed, so the client retries rather than gives up on its credential. what names the request in
// the log line of a cache failure.
func Refuse(w http.ResponseWriter, log logr.Logger, err error, what string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrUnauthorized):
		w.WriteHeader(http.StatusUnauthorized)
	default:
		log.Error(err, "Cannot authenticate "+what)
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return true
}
