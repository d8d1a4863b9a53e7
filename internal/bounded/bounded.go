// Package bounded keeps what collectors and hosts send within the sizes the operator promises: strings cut
// to the API's field bounds, request bodies read within a limit before and after gzip.
package bounded

import "unicode/utf8"

// ellipsis marks a string that was cut.
const ellipsis = "..."

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence, ending a cut string with "..." so
// a reader sees it was cut. n below the ellipsis' length cuts without it.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(ellipsis) {
		return cut(s, n)
	}
	return cut(s, n-len(ellipsis)) + ellipsis
}

// cut is the longest prefix of s of at most n bytes that ends on a rune boundary.
func cut(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
