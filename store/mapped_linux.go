package store

import "syscall"

// dropMapped advises the kernel that the size bytes mapped at addr are not
// needed: a shared file mapping's pages leave the resident set and stay in
// the page cache. The address is bbolt's mapping, never Go memory, so it is
// passed as the number it is rather than made a slice through unsafe.
func dropMapped(addr uintptr, size int64) error {
	if addr == 0 || size <= 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(size), syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
