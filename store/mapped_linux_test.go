package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// ReleaseMapped takes the pages reads touched out of the resident set, and
// the database reads the same afterwards.
func TestReleaseMappedDropsResidentPages(t *testing.T) {
	s := openTest(t)
	for i := range 300 {
		r := newRun(fmt.Sprintf("Mapped %d", i), workflow.StateSucceeded)
		r.Params.ProviderName = strings.Repeat("x", 3000) // runs of about a page each
		if err := s.CreateRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []byte {
		var all bytes.Buffer
		if err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
				all.Write(k)
				all.Write(v)
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return all.Bytes()
	}
	before := read()
	if kb := mappedRSS(t, s.Path()); kb < 512 {
		t.Fatalf("%d kB of the database resident after reading it all; want the pages read (the test proves nothing)", kb)
	}
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	if kb := mappedRSS(t, s.Path()); kb > 8 {
		t.Fatalf("%d kB of the database still resident after ReleaseMapped", kb)
	}
	if !bytes.Equal(read(), before) {
		t.Fatal("the database reads differently after ReleaseMapped")
	}
}

// mappedRSS is the resident size, in kB, of this process's mappings of path.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) >= 6 && fields[5] == path // a mapping's header line
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kb
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}
