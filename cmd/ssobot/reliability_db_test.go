//go:build !ssobot_server

package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
)

// relMakeDB writes a valid ssobot database with n finished runs and returns
// its path.
func relMakeDB(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssobot.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		r := &workflow.Run{
			State:     workflow.StateSucceeded,
			Request:   workflow.Request{ApplicationName: fmt.Sprintf("App %d", i), RequestedBy: "U0ALICE", Channel: "C0OPS"},
			Params:    workflow.Params{ApplicationName: fmt.Sprintf("App %d", i), ApplicationSlug: fmt.Sprintf("app-%d", i)},
			CreatedAt: time.Now().UTC(),
		}
		ev := workflow.Event{Type: workflow.EventCreated, Message: strings.Repeat("audit line ", 20)}
		if err := st.CreateRun(ctx, r, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func relFileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func relDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestServeRefusesBadDatabase: a damaged, foreign or locked database file
// stops `ssobot serve` with exit code 1 and one error line naming the file
// (for a lock, the bounded time it waited), and the file (and its directory)
// are left exactly as they were.
func TestServeRefusesBadDatabase(t *testing.T) {
	const pageSize = 4096 // bbolt's default page size here; meta pages are 0 and 1
	tests := []struct {
		name string
		// setup makes the file at path; it may hold a lock until the test ends.
		setup func(t *testing.T) string
		want  string // in the error line, after the path
	}{
		{"random bytes", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "ssobot.db")
			b := make([]byte, 64<<10)
			rand.Read(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, "is not a valid ssobot database: no valid bbolt header"},
		{"truncated in half", func(t *testing.T) string {
			path := relMakeDB(t, 300)
			// Half of the pages in use: bbolt grows the file further ahead.
			st, err := store.Open(path, store.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			size, err := st.Size()
			if cerr := st.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
			return path
		}, "is not a valid ssobot database: truncated"},
		{"both meta pages overwritten", func(t *testing.T) string {
			path := relMakeDB(t, 20)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			garbage := make([]byte, 2*pageSize)
			rand.Read(garbage)
			if _, err := f.WriteAt(garbage, 0); err != nil {
				t.Fatal(err)
			}
			return path
		}, "is not a valid ssobot database"},
		{"a damaged page inside", func(t *testing.T) string {
			// The runs bucket's root page: the header is intact, so only
			// reading the data finds the damage.
			path := relMakeDB(t, 300)
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var root int64
			err = db.View(func(tx *bolt.Tx) error {
				root = int64(tx.Bucket([]byte("runs")).Root())
				return nil
			})
			size := int64(db.Info().PageSize)
			db.Close()
			if err != nil || root == 0 {
				t.Fatalf("runs bucket root page %d: %v", root, err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			garbage := make([]byte, size)
			rand.Read(garbage)
			if _, err := f.WriteAt(garbage, root*size); err != nil {
				t.Fatal(err)
			}
			return path
		}, "is not a valid ssobot database: check"},
		{"another program's bbolt file", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "other.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("sessions"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}, `is not a valid ssobot database: a bbolt database of another program (buckets ["sessions"]`},
		{"locked by another process", func(t *testing.T) string {
			path := relMakeDB(t, 3)
			st, err := store.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return path
		}, fmt.Sprintf("(waited %s): database is locked (SSOBOT_DB): run one replica per database", storeLockTimeout)},
	}
	f := newFakes(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			hash, names := relFileHash(t, path), relDirNames(t, filepath.Dir(path))
			env := f.env(t)
			env["SSOBOT_DB"] = path
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			p, err := relStart(t, env)
			if err != nil {
				t.Fatal(err)
			}
			code, err := p.wait(ctx)
			took := time.Since(start)
			out := string(p.output())
			if err != nil || code != exitFailure {
				t.Fatalf("exit %d, %v; want %d\n%s", code, err, exitFailure, out)
			}
			var errLines []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var l struct {
					Level string `json:"level"`
					Msg   string `json:"msg"`
					Err   string `json:"error"`
				}
				if json.Unmarshal([]byte(line), &l) != nil {
					t.Errorf("not a log line: %q", line)
					continue
				}
				if l.Level == "ERROR" {
					errLines = append(errLines, l.Msg+": "+l.Err)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("want one error line, got %d:\n%s", len(errLines), out)
			}
			if !strings.Contains(errLines[0], path) || !strings.Contains(errLines[0], tt.want) {
				t.Errorf("error line %q\nwant the path %s and %q", errLines[0], path, tt.want)
			}
			t.Logf("exit %d after %s: %s", code, took.Round(time.Millisecond), errLines[0])
			if relFileHash(t, path) != hash {
				t.Error("the database file was changed")
			}
			if got := relDirNames(t, filepath.Dir(path)); !slices.Equal(got, names) {
				t.Errorf("the directory changed: %v, was %v", got, names)
			}
		})
	}
}

// TestBackupWhileRunning: /api/backup taken while runs are in flight opens
// with store.Open, passes Check and holds every run, and the live database
// is unaffected.
func TestBackupWhileRunning(t *testing.T) {
	f, _ := newCountingFakes(t)
	f.ak.SetLatency(10 * time.Millisecond)
	f.cf.SetLatency(10 * time.Millisecond)
	env := f.env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCampaign(ctx, t, f, env, killConfig{open: 3}, 1)
	c.prefix = "Backup"
	defer c.stop()
	c.restart()
	for range 3 {
		c.newRun()
	}
	if !c.driveUntil(workflow.StepAuthentikProvider) {
		t.Fatal("no run reached the provider step")
	}
	body, err := relGet(ctx, c.srv.adminURL+"/api/backup")
	if err != nil {
		t.Fatal(err)
	}
	c.finish()
	c.check()

	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	// A restore opens the copy for writing, as the bot will.
	st, err := store.Open(path, store.Options{Verify: true})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("the backup fails Check: %v", err)
	}
	runs, err := st.ListRuns(ctx, workflow.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	var want []int64
	for _, cmd := range c.cmds {
		if cmd.runID != 0 {
			want = append(want, cmd.runID)
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("the backup holds runs %v; started %v", ids, want)
	}
	t.Logf("backup of %d bytes taken with runs in flight: %d runs, Check passes", len(body), len(runs))
}
