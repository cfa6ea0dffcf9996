//go:build !linux

package store

// dropMapped does nothing here: the advice that drops a shared file
// mapping's pages from the resident set while the page cache keeps them is
// Linux's (MADV_DONTNEED), and the image ssobot ships in runs on Linux.
func dropMapped(addr uintptr, size int64) error { return nil }
