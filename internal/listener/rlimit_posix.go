//go:build linux || darwin

package listener

import "syscall"

// openFilesLimit is the process' soft limit on open files (Go raises it to the hard limit at start), 0 when
// unknown.
func openFilesLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == ^uint64(0) {
		return 0
	}
	return l.Cur
}
