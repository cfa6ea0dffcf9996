package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

// openTest opens a store in a fresh directory. After the test its
// consistency check must pass, like bbolt's own test helper requires.
func openTest(t testing.TB) *Store {
	t.Helper()
	return openTestAt(t, filepath.Join(t.TempDir(), "ssobot.db"))
}

func openTestAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("Check after the test: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	workflowtest.TestStore(t, func(t *testing.T) workflow.Store { return openTest(t) })
}

func newRun(name string, state workflow.State) *workflow.Run {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	r := &workflow.Run{
		State:     state,
		Request:   workflow.Request{ApplicationName: name, RequestedBy: "U0REQUEST", Channel: "C0CHANNEL"},
		Params:    workflow.Params{ApplicationName: name, ApplicationSlug: workflow.Slugify(name), ClientID: "client-" + workflow.Slugify(name)},
		CreatedAt: at,
		UpdatedAt: at,
	}
	for _, p := range workflow.Plan {
		r.Steps = append(r.Steps, workflow.Step{Name: p.Name, Kind: p.Kind, Status: workflow.StepSucceeded, Attempts: 1, StartedAt: at, FinishedAt: at})
	}
	return r
}

func note(msg string) workflow.Event {
	return workflow.Event{Type: workflow.EventNote, Message: msg, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func mustCreate(t testing.TB, s *Store, r *workflow.Run, events ...workflow.Event) *workflow.Run {
	t.Helper()
	if err := s.CreateRun(context.Background(), r, events...); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r
}

// bulkCreate writes many runs in one transaction, so tests and benchmarks
// get a large database in milliseconds instead of one fsync per run.
func bulkCreate(t testing.TB, s *Store, runs []*workflow.Run) {
	t.Helper()
	err := s.update(func(tx *bolt.Tx) error {
		for _, r := range runs {
			id, _, err := createRun(tx, r, nil, []workflow.Event{note("created")})
			if err != nil {
				return err
			}
			r.ID, r.Version = id, 1
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bulk create: %v", err)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// snapshot is what a reader can see of a store, for comparing two stores.
type snapshot struct {
	Runs   []*workflow.Run
	Events map[int64][]workflow.Event
	Counts map[workflow.State]int
}

func takeSnapshot(t *testing.T, s *Store) snapshot {
	t.Helper()
	ctx := t.Context()
	runs, err := s.ListRuns(ctx, workflow.ListOptions{})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	snap := snapshot{Runs: runs, Events: make(map[int64][]workflow.Event)}
	for _, r := range runs {
		if snap.Events[r.ID], err = s.Events(ctx, r.ID); err != nil {
			t.Fatalf("Events(%d): %v", r.ID, err)
		}
	}
	if snap.Counts, err = s.CountByState(ctx); err != nil {
		t.Fatalf("CountByState: %v", err)
	}
	return snap
}

// fill writes a few runs in several states with events and updates.
func fill(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	for i, st := range []workflow.State{workflow.StatePending, workflow.StateSucceeded, workflow.StateAwaitingApproval, workflow.StateFailed} {
		r := mustCreate(t, s, newRun(fmt.Sprintf("App %d", i), st), note("created"))
		if err := s.AppendEvents(ctx, r.ID, note("appended")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateRun(ctx, 1, func(r *workflow.Run) ([]workflow.Event, error) {
		r.State = workflow.StateAwaitingApproval
		return []workflow.Event{note("updated")}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s)
	want := takeSnapshot(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestAt(t, path)
	if got := takeSnapshot(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening:\n got %+v\nwant %+v", got, want)
	}
	// IDs and event sequences continue where they were.
	r := mustCreate(t, s, newRun("After", workflow.StatePending))
	if r.ID != 5 {
		t.Errorf("first run after reopening got ID %d, want 5", r.ID)
	}
	ev := []workflow.Event{note("after reopening")}
	if err := s.AppendEvents(t.Context(), 1, ev...); err != nil {
		t.Fatal(err)
	}
	if last := want.Events[1][len(want.Events[1])-1]; ev[0].Seq != last.Seq+1 {
		t.Errorf("event appended after reopening got Seq %d, want %d", ev[0].Seq, last.Seq+1)
	}
}

func TestStoreAssignsEventFields(t *testing.T) {
	s := openTest(t)
	events := []workflow.Event{note("one"), note("two")}
	r := mustCreate(t, s, newRun("App", workflow.StatePending), events...)
	for i, e := range events {
		if e.RunID != r.ID || e.Seq != uint64(i+1) {
			t.Errorf("CreateRun event %d: RunID %d Seq %d, want %d %d", i, e.RunID, e.Seq, r.ID, i+1)
		}
	}
	var fromFn []workflow.Event
	if _, err := s.UpdateRun(t.Context(), r.ID, func(*workflow.Run) ([]workflow.Event, error) {
		fromFn = []workflow.Event{note("three")}
		return fromFn, nil
	}); err != nil {
		t.Fatal(err)
	}
	if fromFn[0].RunID != r.ID || fromFn[0].Seq != 3 {
		t.Errorf("UpdateRun event: RunID %d Seq %d, want %d 3", fromFn[0].RunID, fromFn[0].Seq, r.ID)
	}
}

// A new run's events are encoded before the shared commit, with the run's
// ID filled in there: what is stored is exactly what encoding the numbered
// events gives, for IDs of any length, with the events side by side in one
// buffer (the ID written in place must not run into the next event's bytes).
// A file that already holds events under the new ID (left by a damaged
// file's run) gets the new ones after them.
func TestNewRunEventsStoredAsEncoded(t *testing.T) {
	events := func() []workflow.Event {
		odd := note(`quotes " and <tags> & ünïcode`)
		odd.Data = map[string]string{"b": "2", "a": `x"y`}
		odd.Step, odd.Actor = workflow.StepPreflight, "U1"
		return []workflow.Event{note("created"), odd, note("third")}
	}
	for _, tc := range []struct {
		name     string
		id       int64
		leftover int // events already stored under the new ID
	}{
		{"first run", 1, 0},
		{"two digits", 42, 0},
		{"largest ID", math.MaxInt64, 0},
		{"events left under the ID", 7, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			err := s.update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketRuns).SetSequence(uint64(tc.id - 1)); err != nil {
					return err
				}
				for seq := range tc.leftover {
					if err := tx.Bucket(bucketEvents).Put(eventKey(tc.id, uint64(seq+1)), []byte(`{"run_id":7,"seq":`+strconv.Itoa(seq+1)+`,"type":"note","message":"old"}`)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			evs := events()
			r := mustCreate(t, s, newRun("App", workflow.StatePending), evs...)
			if r.ID != tc.id {
				t.Fatalf("run ID %d, want %d", r.ID, tc.id)
			}
			want := events()
			for i := range want {
				want[i].RunID, want[i].Seq = tc.id, uint64(tc.leftover+i+1)
			}
			if !reflect.DeepEqual(evs, want) {
				t.Errorf("CreateRun left the events as\n%+v\nwant\n%+v", evs, want)
			}
			err = s.db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketEvents)
				for _, e := range want {
					wantV, _ := json.Marshal(&e)
					if got := b.Get(eventKey(tc.id, e.Seq)); !bytes.Equal(got, wantV) {
						t.Errorf("event %d stored as\n%s\nwant\n%s", e.Seq, got, wantV)
					}
				}
				if n := b.Stats().KeyN; n != tc.leftover+len(want) {
					t.Errorf("%d events stored, want %d", n, tc.leftover+len(want))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRefusesBadWrites(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := mustCreate(t, s, newRun("App", workflow.StatePending))
	tests := []struct {
		name string
		call func() error
	}{
		{"create with invalid state", func() error { return s.CreateRun(ctx, newRun("Bad", "bogus")) }},
		{"create with empty state", func() error { return s.CreateRun(ctx, newRun("Bad", "")) }},
		{"create nil", func() error { return s.CreateRun(ctx, nil) }},
		{"update to invalid state", func() error {
			_, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
				r.State = "bogus"
				return []workflow.Event{note("bad")}, nil
			})
			return err
		}},
		{"update changing the ID", func() error {
			_, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
				r.ID = 99
				return []workflow.Event{note("bad")}, nil
			})
			return err
		}},
		{"list with unknown state", func() error {
			_, err := s.ListRuns(ctx, workflow.ListOptions{States: []workflow.State{"bogus"}})
			return err
		}},
		{"list with negative limit", func() error {
			_, err := s.ListRuns(ctx, workflow.ListOptions{Limit: -1})
			return err
		}},
	}
	before := takeSnapshot(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Fatal("no error")
			}
			if after := takeSnapshot(t, s); !reflect.DeepEqual(after, before) {
				t.Fatalf("the refused call changed the store:\n got %+v\nwant %+v", after, before)
			}
		})
	}
	if _, err := s.GetRun(ctx, 99); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("a run 99 exists: %v", err)
	}
}

func TestCountByState(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	fill(t, s)
	for _, id := range []int64{2, 3} {
		if _, err := s.UpdateRun(ctx, id, func(r *workflow.Run) ([]workflow.Event, error) {
			r.State = workflow.StateCancelled
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Runs now: 1 awaiting_approval, 2 cancelled, 3 cancelled, 4 failed.
	want := map[workflow.State]int{}
	for _, st := range workflow.States {
		want[st] = 0
	}
	want[workflow.StateAwaitingApproval] = 1
	want[workflow.StateCancelled] = 2
	want[workflow.StateFailed] = 1
	got, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CountByState = %v, want %v", got, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.CountByState(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("CountByState with a cancelled context: %v", err)
	}
}

// TestCheckFindsBrokenIndexes damages the indexes behind the store's back:
// Check must notice, or it would not guard the other tests.
func TestCheckFindsBrokenIndexes(t *testing.T) {
	tests := []struct {
		name   string
		damage func(tx *bolt.Tx) error
		want   string
	}{
		{"open run missing from the index", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketOpen).Delete(runKey(1))
		}, "run 1: awaiting_approval but the open index says"},
		{"finished run in the index", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketOpen).Put(runKey(2), []byte(workflow.StateRunning))
		}, "run 2: succeeded with no step running but in the open index"},
		{"index names a missing run", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketOpen).Put(runKey(77), []byte(workflow.StateRunning))
		}, "open index names missing run 77"},
		{"count off", func(tx *bolt.Tx) error {
			return addCount(tx, workflow.StateFailed, 3)
		}, "count of failed is 4, 1 runs are"},
		{"a run that is not JSON", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRuns).Put(runKey(3), []byte(`{"id":3,"state":"awaiting_approval"`))
		}, "run 3: not valid JSON"},
		{"a run under another run's key", func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketRuns).Get(runKey(4))
			return tx.Bucket(bucketRuns).Put(runKey(2), bytes.Clone(v))
		}, "run 4: stored under key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "ssobot.db"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fill(t, s)
			if err := s.Check(); err != nil {
				t.Fatalf("Check before the damage: %v", err)
			}
			if err := s.db.Update(tt.damage); err != nil {
				t.Fatal(err)
			}
			err = s.Check()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s := openTestAt(t, path)
	mustCreate(t, s, newRun("App", workflow.StatePending))
	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprintf("readonly=%t", ro), func(t *testing.T) {
			other, err := Open(path, Options{Timeout: 20 * time.Millisecond, ReadOnly: ro})
			if err == nil {
				other.Close()
				t.Fatal("a second Open succeeded while a writer holds the lock")
			}
			if !errors.Is(err, ErrLocked) {
				t.Errorf("err = %v, want ErrLocked", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "another ssobot process holds "+path) {
				t.Errorf("message %q does not say who holds %s", msg, path)
			}
		})
	}
	// The holder is unaffected.
	if _, err := s.GetRun(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s)
	want := takeSnapshot(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	hash := fileHash(t, path)

	// Readers share the lock.
	ro1, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	defer ro1.Close()
	ro2, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("second read-only Open: %v", err)
	}
	defer ro2.Close()

	if got := takeSnapshot(t, ro1); !reflect.DeepEqual(got, want) {
		t.Fatalf("read-only store sees\n %+v\nwant %+v", got, want)
	}
	if err := ro1.Check(); err != nil {
		t.Errorf("Check on a read-only store: %v", err)
	}
	var buf bytes.Buffer
	if _, err := ro1.Backup(t.Context(), &buf); err != nil {
		t.Errorf("Backup of a read-only store: %v", err)
	}

	ctx := t.Context()
	called := false
	writes := []struct {
		name string
		call func() error
	}{
		{"CreateRun", func() error { return ro1.CreateRun(ctx, newRun("New", workflow.StatePending)) }},
		{"UpdateRun", func() error {
			_, err := ro1.UpdateRun(ctx, 1, func(*workflow.Run) ([]workflow.Event, error) {
				called = true
				return nil, nil
			})
			return err
		}},
		{"AppendEvents", func() error { return ro1.AppendEvents(ctx, 1, note("x")) }},
	}
	for _, w := range writes {
		err := w.call()
		if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s on a read-only store: err = %v, want ErrReadOnly naming %s", w.name, err, path)
		}
	}
	if called {
		t.Error("UpdateRun called fn on a read-only store")
	}

	// A writer cannot start while readers hold the shared lock.
	if w, err := Open(path, Options{Timeout: 20 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		if err == nil {
			w.Close()
		}
		t.Errorf("Open for writing while readers hold the lock: err = %v, want ErrLocked", err)
	}
	if fileHash(t, path) != hash {
		t.Error("read-only use changed the file")
	}
}

func TestReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	_, err := Open(path, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("read-only Open of a missing file: err = %v, want fs.ErrNotExist naming the path", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created the file: %v", err)
	}
}

// writeDB builds a bbolt file with fn, outside the store.
func writeDB(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// validDB writes an ssobot database with some runs and returns its bytes,
// compacted as a backup is.
func validDB(t *testing.T, runs int) []byte {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "valid.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := make([]*workflow.Run, runs)
	for i := range batch {
		batch[i] = newRun(fmt.Sprintf("App %d", i), workflow.StateSucceeded)
	}
	bulkCreate(t, s, batch)
	var buf bytes.Buffer
	if _, err := s.Backup(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	valid := validDB(t, 500)
	if len(valid) < 16*4096 {
		t.Fatalf("the valid database has only %d bytes; the truncation cases need more pages", len(valid))
	}
	writeBytes := func(b []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	withMeta := func(version string) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			writeDB(t, path, func(tx *bolt.Tx) error {
				meta, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				if version == "" {
					return nil
				}
				if err := meta.Put(keySchemaVersion, []byte(version)); err != nil {
					return err
				}
				for _, name := range dataBuckets {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	const invalid = "is not a valid ssobot database"
	tests := []struct {
		name    string
		make    func(t *testing.T, path string)
		wantErr error
		wantMsg string
	}{
		{"random bytes", writeBytes(randomBytes(64 << 10)), ErrInvalid, invalid},
		{"a few random bytes", writeBytes(randomBytes(100)), ErrInvalid, invalid},
		{"text", writeBytes([]byte("# not a database\n")), ErrInvalid, invalid},
		{"valid database cut in half", writeBytes(valid[:len(valid)/2]), ErrInvalid, "truncated"},
		{"valid database cut after the headers", writeBytes(valid[:2*4096]), ErrInvalid, "truncated"},
		{"valid database cut inside a header", writeBytes(valid[:3000]), ErrInvalid, invalid},
		{"valid database with damaged headers", func(t *testing.T, path string) {
			b := slices.Clone(valid)
			copy(b[16:64], randomBytes(48))           // meta page 0
			copy(b[4096+16:4096+64], randomBytes(48)) // meta page 1
			writeBytes(b)(t, path)
		}, ErrInvalid, invalid},
		{"bbolt database of another program", func(t *testing.T, path string) {
			writeDB(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("widgets"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			})
		}, ErrInvalid, `another program (buckets ["widgets"]`},
		{"meta bucket without a schema version", withMeta(""), ErrInvalid, "no schema version"},
		{"schema version not a number", withMeta("one"), ErrInvalid, "not a positive number"},
		{"newer schema", withMeta("2"), ErrSchema, "has schema version 2 but this ssobot reads up to 1; upgrade ssobot"},
		{"missing bucket", func(t *testing.T, path string) {
			withMeta("1")(t, path)
			writeDB(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketEvents) })
		}, ErrInvalid, `bucket "events" is missing`},
	}
	for _, tt := range tests {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/readonly=%t", tt.name, ro), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "ssobot.db")
				tt.make(t, path)
				before := fileHash(t, path)
				s, err := Open(path, Options{ReadOnly: ro, Timeout: time.Second})
				if err == nil {
					s.Close()
					t.Fatal("Open accepted the file")
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q should name %s and say %q", msg, path, tt.wantMsg)
				}
				if fileHash(t, path) != before {
					t.Fatal("Open changed the file it refused")
				}
			})
		}
	}
}

func TestOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open of a directory: err = %v, want ErrInvalid", err)
	}
}

func TestOpenEmptyFiles(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"zero-length file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt database without buckets", func(t *testing.T, path string) {
			writeDB(t, path, func(*bolt.Tx) error { return nil })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ssobot.db")
			tt.make(t, path)

			// A reader has nothing to read: refused, file untouched.
			before := fileHash(t, path)
			if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrInvalid) {
				t.Errorf("read-only Open: err = %v, want ErrInvalid", err)
			}
			if fileHash(t, path) != before {
				t.Fatal("read-only Open changed the file")
			}

			// A writer adopts it: nothing in it can be lost.
			s := openTestAt(t, path)
			r := mustCreate(t, s, newRun("App", workflow.StatePending))
			if r.ID != 1 {
				t.Errorf("first run got ID %d, want 1", r.ID)
			}
		})
	}
}

func TestBackup(t *testing.T) {
	s := openTest(t)
	fill(t, s)
	want := takeSnapshot(t, s)

	var buf bytes.Buffer
	n, err := s.Backup(t.Context(), &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Errorf("Backup returned %d, wrote %d bytes", n, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := openTestAt(t, path)
	if err := c.Check(); err != nil {
		t.Fatalf("Check of the copy: %v", err)
	}
	if got := takeSnapshot(t, c); !reflect.DeepEqual(got, want) {
		t.Fatalf("the copy holds\n %+v\nwant %+v", got, want)
	}
	if r := mustCreate(t, c, newRun("In the copy", workflow.StatePending)); r.ID != 5 {
		t.Errorf("the copy's next run got ID %d, want 5", r.ID)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Backup(ctx, &buf); !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled context: err = %v", err)
	}
}

// A backup is a read transaction held for as long as its client takes to
// read the copy. bbolt remaps the file when a commit grows it past its
// mapping, and a remap waits for every read transaction: without a mapping
// large enough from the start, a slow download would stop every commit, so
// every acknowledgement waiting for one, until it ended.
func TestBackupDoesNotHoldUpGrowingCommits(t *testing.T) {
	if initialMapping == 0 {
		t.Skip("bbolt's default mapping on this system: a backup does hold up commits growing the database")
	}
	s := openTest(t)
	mustCreate(t, s, newRun("Before the backup", workflow.StatePending))
	start, err := s.Size()
	if err != nil {
		t.Fatal(err)
	}

	w := &stalledWriter{reading: make(chan struct{}), release: make(chan struct{})}
	backup := make(chan error, 1)
	go func() {
		_, err := s.Backup(t.Context(), w)
		backup <- err
	}()
	select {
	case <-w.reading: // the backup's read transaction is open, and stays open
	case err := <-backup:
		t.Fatalf("Backup ended before its first write: %v", err)
	}

	// bbolt's own mapping is the next power of two (at least 32 KiB) above
	// the size it needed at its last remap, so less than twice the
	// database's size now: growing the database to twice that size and 64
	// KiB needs a remap unless the mapping was made larger from the start.
	// Concurrent writers share commits, so it takes few fsyncs.
	target := max(2*start, 64<<10)
	grown := make(chan error, 17) // each writer's error, then the end
	go func() {
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					size, err := s.Size()
					if err != nil {
						grown <- err
						return
					}
					if size > target {
						return
					}
					if err := s.CreateRun(t.Context(), newRun(fmt.Sprintf("During the backup %d.%d", w, i), workflow.StatePending)); err != nil {
						grown <- err
						return
					}
				}
			})
		}
		wg.Wait()
		grown <- nil
	}()
	select {
	case err := <-grown:
		if err != nil {
			t.Fatalf("create during the backup: %v", err)
		}
	case <-time.After(30 * time.Second):
		close(w.release)
		t.Fatal("commits growing the database waited for the backup's read transaction")
	}

	close(w.release)
	if err := <-backup; err != nil {
		t.Fatalf("Backup: %v", err)
	}
}

// stalledWriter takes its first write's bytes, says so, and then blocks
// until released: a client that stopped reading.
type stalledWriter struct {
	once             sync.Once
	reading, release chan struct{}
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.reading) })
	<-w.release
	return len(p), nil
}

// largeDB writes the given numbers of finished and open runs, spread evenly,
// and returns the IDs of the open ones, newest first.
func largeDB(t testing.TB, s *Store, finished, open int) []int64 {
	t.Helper()
	runs := make([]*workflow.Run, 0, finished+open)
	every, made := (finished+open)/open, 0
	for i := range finished + open {
		st := workflow.StateSucceeded
		if i%every == every-1 && made < open {
			st, made = workflow.StateAwaitingApproval, made+1
		}
		runs = append(runs, newRun(fmt.Sprintf("App %d", i), st))
	}
	bulkCreate(t, s, runs)
	var ids []int64
	for _, r := range slices.Backward(runs) {
		if !r.State.Terminal() {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) != open {
		t.Fatalf("made %d open runs, want %d", len(ids), open)
	}
	return ids
}

var openStates = []workflow.State{workflow.StatePending, workflow.StateAwaitingApproval, workflow.StateRunning}

// TestOpenListOpenRunsLarge is start-up with a long history: reopen a
// database of 10,000 finished runs and find the 100 open ones.
func TestOpenListOpenRunsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large database")
	}
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := largeDB(t, s, 10_000, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestAt(t, path)
	runs, err := s.ListRuns(t.Context(), workflow.ListOptions{States: openStates})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, r := range runs {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("open runs = %v, want %v", got, want)
	}
	counts, err := s.CountByState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if counts[workflow.StateSucceeded] != 10_000 || counts[workflow.StateAwaitingApproval] != 100 {
		t.Errorf("counts = %v", counts)
	}
}

// TestDamagedPages overwrites data pages of a valid database: reads must
// fail with ErrInvalid instead of panicking, Check must report the damage,
// and Options.Verify must refuse the file without changing it.
func TestDamagedPages(t *testing.T) {
	valid := validDB(t, 500)
	b := slices.Clone(valid)
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	for i := len(b) / 2; i < len(b)*3/4; i++ {
		b[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "ssobot.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, path)

	if s, err := Open(path, Options{Verify: true}); !errors.Is(err, ErrInvalid) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open with Verify: err = %v, want ErrInvalid", err)
	}
	if fileHash(t, path) != before {
		t.Fatal("Open with Verify changed the file it refused")
	}

	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open without Verify: %v", err)
	}
	defer s.Close()
	if err := s.Check(); err == nil {
		t.Error("Check found no damage")
	}
	_, err = s.ListRuns(t.Context(), workflow.ListOptions{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path+" is not a valid ssobot database: damaged") {
		t.Errorf("ListRuns over damaged pages: err = %v, want ErrInvalid naming the path", err)
	}
	for id := int64(1); id <= 500; id++ {
		if _, err := s.GetRun(t.Context(), id); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("GetRun(%d): err = %v, want nil or ErrInvalid", id, err)
		}
	}
}

// TestUpdateRunFnPanics: a panic in the caller's fn is the caller's bug: it
// reaches the caller unchanged, nothing is written and the store goes on.
func TestUpdateRunFnPanics(t *testing.T) {
	s := openTest(t)
	r := mustCreate(t, s, newRun("App", workflow.StatePending), note("created"))
	want := takeSnapshot(t, s)
	boom := errors.New("boom")
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = s.UpdateRun(t.Context(), r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			r.State = workflow.StateCancelled
			panic(boom)
		})
		return nil
	}()
	if got != boom {
		t.Fatalf("recovered %v, want the fn's own panic value", got)
	}
	if after := takeSnapshot(t, s); !reflect.DeepEqual(after, want) {
		t.Fatalf("the panicking fn changed the store:\n got %+v\nwant %+v", after, want)
	}
	if _, err := s.UpdateRun(t.Context(), r.ID, func(*workflow.Run) ([]workflow.Event, error) { return nil, nil }); err != nil {
		t.Fatalf("UpdateRun after a panic: %v", err)
	}
}

// A run encoded before its ID is known gets the ID spliced in: the bytes
// are exactly those of encoding the numbered run.
func TestWithID(t *testing.T) {
	r := &workflow.Run{State: workflow.StatePending, Version: 1, Request: workflow.Request{ApplicationName: `Gra"fana`}}
	pre, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{1, 42, math.MaxInt64} {
		r.ID = id
		want, _ := json.Marshal(r)
		r.ID = 0
		// Without room for the digits the bytes are copied; with room (as
		// encodeNew leaves) they are changed in place.
		for _, room := range []int{0, maxIDDigits} {
			in := append(make([]byte, 0, len(pre)+room), pre...)
			got, ok := withID(in, id)
			if !ok || !bytes.Equal(got, want) {
				t.Errorf("withID(%d) with room for %d more bytes = %s, %t; want %s", id, room, got, ok, want)
				continue
			}
			fits := room >= len(strconv.FormatInt(id, 10))-1
			if inPlace := &got[0] == &in[0]; inPlace != fits {
				t.Errorf("withID(%d) with room for %d more bytes: in place = %t", id, room, inPlace)
			}
		}
	}
	if _, ok := withID([]byte(`{"state":"pending","id":0}`), 7); ok {
		t.Error("withID accepted an encoding that does not start with the ID")
	}
	// CreateRun's encoding leaves the room, so the commit copies nothing,
	// even in a buffer the encoding fills exactly (a pooled one may).
	enc, err := encodeNew(bytes.NewBuffer(make([]byte, 0, len(pre)+1)), r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, pre) || cap(enc)-len(enc) < maxIDDigits {
		t.Errorf("encodeNew = %s with room for %d more bytes; want %s with room for %d", enc, cap(enc)-len(enc), pre, maxIDDigits)
	}
}

// TestOpenSystemRefusal: when the system refuses the file (a read-only
// mount, a full disk, an I/O error), the error says so and does not call
// the database invalid, which would invite deleting or restoring a good
// file.
func TestOpenSystemRefusal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	readOnlyMount := func(name string, _ int, _ os.FileMode) (*os.File, error) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EROFS}
	}
	_, err = Open(path, Options{openFile: readOnlyMount})
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "the system refused") {
		t.Errorf("Open on a read-only mount: %v; want the system's refusal, not ErrInvalid", err)
	}
}

// TestVerifyFlippedBit: a flipped bit in a page's element table (a bad
// offset or child page number, under an intact page header) makes Verify
// refuse the file; it must not crash the process, which bbolt's own check
// would, walking the pages in a goroutine of its own.
func TestVerifyFlippedBit(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags uint16 // the page kind to damage
		flip  func(b []byte, el int)
	}{
		// leaf element: flags u32, pos u32, ksize u32, vsize u32
		{"leaf value offset", 0x02, func(b []byte, el int) {
			binary.LittleEndian.PutUint32(b[el+4:], binary.LittleEndian.Uint32(b[el+4:])|1<<28)
		}},
		// branch element: pos u32, ksize u32, pgid u64
		{"branch child page", 0x01, func(b []byte, el int) {
			binary.LittleEndian.PutUint64(b[el+8:], 1<<30)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := validDB(t, 500)
			const ps, header, elem = 4096, 16, 16
			// Every such page, free ones too: some are in use.
			damaged := false
			for off := 2 * ps; off+ps <= len(b); off += ps {
				if binary.LittleEndian.Uint16(b[off+8:]) == tt.flags && binary.LittleEndian.Uint16(b[off+10:]) > 3 {
					tt.flip(b, off+header+2*elem)
					damaged = true
				}
			}
			if !damaged {
				t.Fatal("no page of that kind to damage")
			}
			path := filepath.Join(t.TempDir(), "ssobot.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, Options{Verify: true}); !errors.Is(err, ErrInvalid) {
				t.Errorf("Open with Verify: %v; want ErrInvalid", err)
			}
		})
	}
}

// readRunHead reads from a run's encoding what a full decode would give,
// and refuses what a decode would refuse.
func TestReadRunHead(t *testing.T) {
	running := newRun("App", workflow.StateRunning)
	running.ID = 12
	running.Steps[2].Status = workflow.StepRunning
	cancelledMidStep := newRun("App", workflow.StateCancelled)
	cancelledMidStep.ID = 13
	cancelledMidStep.Steps[4].Status = workflow.StepRunning
	done := newRun("App", workflow.StateSucceeded)
	done.ID = math.MaxInt64
	for _, r := range []*workflow.Run{running, cancelledMidStep, done, {ID: 1, State: workflow.StatePending}} {
		v, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want := runHead{ID: r.ID, State: r.State}
		for _, st := range r.Steps {
			want.StepRunning = want.StepRunning || st.Status == workflow.StepRunning
		}
		if got, err := readRunHead(v); err != nil || got != want {
			t.Errorf("run %d: readRunHead = %+v, %v; want %+v", r.ID, got, err, want)
		}
	}

	tests := []struct {
		name, in string
		want     runHead
		err      string
	}{
		{"missing fields", `{}`, runHead{}, ""},
		{"nulls", `{"id":null,"state":null,"steps":null}`, runHead{}, ""},
		{"a null step", `{"id":5,"state":"running","steps":[null,{"status":"running"}]}`, runHead{ID: 5, State: workflow.StateRunning, StepRunning: true}, ""},
		{"fields after the steps", `{"steps":[{"status":"succeeded"}],"state":"failed","id":7}`, runHead{ID: 7, State: workflow.StateFailed}, ""},
		{"truncated", `{"id":5,"state":"run`, runHead{}, "not valid JSON"},
		{"an array", `[1,2]`, runHead{}, "an array, not an object"},
		{"id a string", `{"id":"5"}`, runHead{}, "id is a string, not a number"},
		{"id a fraction", `{"id":5.5}`, runHead{}, "id 5.5 is not a run ID"},
		{"id too large", `{"id":9223372036854775808}`, runHead{}, "is not a run ID"},
		{"state a number", `{"id":5,"state":3}`, runHead{}, "state is a number, not a string"},
		{"steps an object", `{"id":5,"steps":{}}`, runHead{}, "steps is an object, not an array"},
		{"a step a string", `{"id":5,"steps":["running"]}`, runHead{}, "a step is a string, not an object"},
		{"a status a boolean", `{"id":5,"steps":[{"status":true}]}`, runHead{}, "a step's status is a boolean, not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readRunHead([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("readRunHead(%s) = %+v, %v; want an error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readRunHead(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}
