package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitFollowsTheContainer(t *testing.T) {
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("LINKMESH_MEMORY_LIMIT", "536870912") // 512Mi
	soft, err := setMemoryLimit()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(483183820); soft != want || debug.SetMemoryLimit(-1) != want {
		t.Fatalf("soft limit %d (runtime %d), want %d", soft, debug.SetMemoryLimit(-1), want)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "100MiB")
	if soft, err := setMemoryLimit(); err != nil || soft != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set: got %d, %v; the runtime's limit must be left alone", soft, err)
	}

	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("LINKMESH_MEMORY_LIMIT", "512Mi")
	if _, err := setMemoryLimit(); err == nil {
		t.Fatal("a limit that is not a number of bytes must fail the start")
	}
}
