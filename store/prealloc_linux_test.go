package store

import (
	"os"
	"testing"
)

// seekHole is Linux's SEEK_HOLE: lseek to the next hole at or after the
// offset (the end of the file when there is none).
const seekHole = 4

// assertAllocated checks that the file has no hole from start to end: the
// zeros were written to disk blocks, not left sparse.
func assertAllocated(t *testing.T, f *os.File, start, end int64) {
	t.Helper()
	hole, err := f.Seek(start, seekHole)
	if err != nil {
		t.Fatalf("seek to the first hole: %v", err)
	}
	if hole < end {
		t.Fatalf("the file has a hole at %d, before %d: the zeros were not written", hole, end)
	}
}
