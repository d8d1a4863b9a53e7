// Package argocdhealth runs the Argo CD health checks of config/argocd with gopher-lua, the interpreter
// Argo CD uses, on an object as the API server serves it.
package argocdhealth

import (
	"fmt"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// Scripts of config/argocd.
const (
	ManagedCollector = "managedcollector.lua"
	EnrollmentToken  = "enrollmenttoken.lua"
)

// Health runs script with obj (decoded JSON) as the global obj, as Argo CD does, and returns the status and
// message it sets.
func Health(script string, obj map[string]any) (string, string, error) {
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "argocd", script))
	if err != nil {
		return "", "", err
	}
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(string(src)); err != nil {
		return "", "", fmt.Errorf("%s: %w", script, err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("%s returned %s, not a table", script, L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message")), nil
}

// toLua converts decoded JSON as Argo CD hands it to health scripts: maps become tables, lists 1-based
// tables, numbers Lua numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	default:
		return lua.LNil
	}
}
