//go:build !linux && !darwin

package listener

// openFilesLimit is unknown here.
func openFilesLimit() uint64 { return 0 }
