package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ssobot/ssobot/workflow"
)

// TestOpenUnderAnAddressSpaceLimit: under a limit on the address space
// (ulimit -v) that refuses the wide mapping, the store still opens, new and
// existing, with bbolt's own mapping. The limit is set in a child process:
// this test binary run again with only this test.
func TestOpenUnderAnAddressSpaceLimit(t *testing.T) {
	if os.Getenv("SSOBOT_TEST_AS_LIMIT") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenUnderAnAddressSpaceLimit$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SSOBOT_TEST_AS_LIMIT=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestOpenUnderAnAddressSpaceLimit") {
			t.Fatalf("the child under the limit: %v\n%s", err, out)
		}
		return
	}

	path := filepath.Join(t.TempDir(), "ssobot.db")
	limit := vmSize(t) + 256<<20
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatalf("set the limit: %v", err)
	}
	// The limit must refuse what the store asks for first, or this test
	// proves nothing.
	if m, err := syscall.Mmap(-1, 0, initialMapping, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON); !errors.Is(err, syscall.ENOMEM) {
		if err == nil {
			_ = syscall.Munmap(m)
		}
		t.Fatalf("a %d-byte mapping under the limit: err = %v, want ENOMEM", initialMapping, err)
	}
	for _, what := range []string{"new", "existing"} {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("Open of the %s database under the limit: %v", what, err)
		}
		if err := s.CreateRun(t.Context(), newRun("Under a limit "+what, workflow.StatePending)); err != nil {
			t.Fatalf("CreateRun in the %s database: %v", what, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// With no room left at all, the error says so, and does not call the
	// file invalid.
	limit = vmSize(t)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatalf("lower the limit: %v", err)
	}
	_, err := Open(path, Options{})
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "address space") {
		t.Fatalf("Open with no address space left: err = %v; want the limit named, not ErrInvalid", err)
	}
}

// vmSize is this process's address space in use, in bytes.
func vmSize(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmSize %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}
