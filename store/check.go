package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// maxProblems bounds what Check reports: the first few problems tell enough.
const maxProblems = 10

// Backup writes a consistent copy of the database to w, without stopping
// writers, and returns the bytes written. The copy opens with Open.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("backup %s: %w", s.path, err)
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup %s: %w", s.path, err)
	}
	return n, nil
}

// ctxWriter stops a long copy once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Check verifies bbolt's page structure (tx.Check) and that the open index
// and the counts agree with the runs. It returns the first problems joined,
// or nil.
func (s *Store) Check() error {
	var problems []error
	check := func(tx *bolt.Tx) error {
		// bbolt's check walks the pages in a goroutine of its own, where a
		// fault on a bad offset or page number (a flipped bit under an
		// intact page header) kills the process: SetPanicOnFault holds only
		// for the goroutine that sets it. Reading every key and value here
		// first turns such damage into an error.
		touchAll(tx)
		for err := range tx.Check() {
			// Drain the channel even past the limit: its goroutine blocks
			// until read.
			if len(problems) < maxProblems {
				problems = append(problems, err)
			}
		}
		if len(problems) > 0 {
			return nil // the indexes of a damaged file tell nothing more
		}
		problems = append(problems, checkIndexes(tx)...)
		return nil
	}
	var err error
	if s.readOnly {
		err = s.view(check)
	} else {
		// A read transaction's check is not safe against concurrent
		// writers (see tx.Check); a write transaction excludes them.
		err = s.exclusive(check)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", s.path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("check %s: %w", s.path, errors.Join(problems...))
	}
	return nil
}

// touchAll reads every key and value of every bucket, nested ones too.
func touchAll(tx *bolt.Tx) {
	var sum byte
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sum += touch(k) + touch(v)
			if v == nil {
				if nested := b.Bucket(k); nested != nil {
					walk(nested)
				}
			}
		}
	}
	_ = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		sum += touch(name)
		walk(b)
		return nil
	})
	touched.Add(uint32(sum))
}

// touched keeps touchAll's reads from being optimised away.
var touched atomic.Uint32

func touch(p []byte) (sum byte) {
	for _, c := range p {
		sum += c
	}
	return sum
}

// exclusive runs fn in a write transaction that is always rolled back: a
// read that excludes every writer.
func (s *Store) exclusive(fn func(tx *bolt.Tx) error) (err error) {
	defer s.recoverDamage(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// checkIndexes compares the open index and the counts with the runs.
func checkIndexes(tx *bolt.Tx) []error {
	var problems []error
	add := func(format string, args ...any) bool {
		problems = append(problems, fmt.Errorf(format, args...))
		return len(problems) < maxProblems
	}
	counts := make(map[workflow.State]uint64)
	open, runs := tx.Bucket(bucketOpen), tx.Bucket(bucketRuns)
	if runs == nil || open == nil || tx.Bucket(bucketCounts) == nil {
		// A bbolt file without ssobot's buckets yet (a first start stopped
		// before it created them): validate has accepted it as empty, and
		// Open creates them; there is nothing to compare.
		return nil
	}
	err := runs.ForEach(func(k, v []byte) error {
		var head struct {
			ID    int64          `json:"id"`
			State workflow.State `json:"state"`
			Steps []struct {
				Status workflow.StepStatus `json:"status"`
			} `json:"steps"`
		}
		if err := json.Unmarshal(v, &head); err != nil {
			if !add("run %d: %v", keyID(k), err) {
				return errStop
			}
			return nil
		}
		counts[head.State]++
		belongs := !head.State.Terminal()
		for _, st := range head.Steps {
			belongs = belongs || st.Status == workflow.StepRunning
		}
		ok := true
		switch indexed := open.Get(k); {
		case head.ID != keyID(k):
			ok = add("run %d: stored under key %d", head.ID, keyID(k))
		case !belongs && indexed != nil:
			ok = add("run %d: %s with no step running but in the open index", head.ID, head.State)
		case belongs && indexed == nil && head.State.Terminal() && !unsettledIndexed(tx):
			// Left by a version that did not index finished runs with a
			// step running; the next writable Open indexes them.
		case belongs && string(indexed) != string(head.State):
			ok = add("run %d: %s but the open index says %q", head.ID, head.State, indexed)
		}
		if !ok {
			return errStop
		}
		return nil
	})
	if err != nil {
		return problems
	}
	_ = open.ForEach(func(k, _ []byte) error {
		if runs.Get(k) == nil && !add("open index names missing run %d", keyID(k)) {
			return errStop
		}
		return nil
	})
	for _, st := range workflow.States {
		var stored uint64
		if v := tx.Bucket(bucketCounts).Get([]byte(st)); len(v) == 8 {
			stored = binary.BigEndian.Uint64(v)
		}
		if stored != counts[st] && !add("count of %s is %d, %d runs are", st, stored, counts[st]) {
			break
		}
	}
	return problems
}

var errStop = errors.New("stop")

// CountByState returns how many runs are in each state (every state is a
// key). It reads the counts kept with every write, not the runs.
func (s *Store) CountByState(ctx context.Context) (map[workflow.State]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	out := make(map[workflow.State]int, len(workflow.States))
	err := s.view(func(tx *bolt.Tx) error {
		counts := tx.Bucket(bucketCounts)
		for _, st := range workflow.States {
			if v := counts.Get([]byte(st)); len(v) == 8 {
				out[st] = int(binary.BigEndian.Uint64(v))
			} else {
				out[st] = 0
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	return out, nil
}
