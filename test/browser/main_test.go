//go:build browser

// Package browser_test drives the operator's web console in a real browser (Debian's chromium, headless,
// through chromedp) against the operator on envtest with simulated collectors: what a person sees on each
// page, that it updates itself, and that it shows nothing without a token or RBAC. `make test-browser` runs
// it; set CONSOLE_SCREENSHOTS=DIR to keep screenshots of the pages there.
package browser_test

import (
	"os"
	"testing"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		return nil, nil
	}))
}
