package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"sync/atomic"

	"github.com/tidwall/gjson"
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
		// for the goroutine that sets it. Touching every key and value here
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

// touchAll touches every key and value of every bucket, nested ones too
// (see touch).
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

// touch reads the first and the last byte of p. The file is mapped in one
// piece, so a slice whose two ends can be read can be read whole: a damaged
// offset or length that points past the mapping (or past the end of the
// file) faults at one of them. Reading every byte cost a start with 10,000
// runs about 50 ms more.
func touch(p []byte) byte {
	if len(p) == 0 {
		return 0
	}
	return p[0] + p[len(p)-1]
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
		head, err := readRunHead(v)
		if err != nil {
			if !add("run %d: %v", keyID(k), err) {
				return errStop
			}
			return nil
		}
		counts[head.State]++
		belongs := !head.State.Terminal() || head.StepRunning
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

// runHead is what checkIndexes compares of a run.
type runHead struct {
	ID          int64
	State       workflow.State
	StepRunning bool
}

// readRunHead reads a run's ID, state and whether a step is running from
// its encoding, which must be valid JSON. Decoding each whole run was about
// 80 % of a check of 10,000 finished runs (CPU profile of Open with
// Verify, which `ssobot serve` runs at every start): gjson validates the
// encoding in one pass and then reads just these fields, near its start.
func readRunHead(v []byte) (runHead, error) {
	var h runHead
	if !gjson.ValidBytes(v) {
		return h, errors.New("not valid JSON")
	}
	run := gjson.ParseBytes(v)
	if !run.IsObject() {
		return h, fmt.Errorf("%s, not an object", jsonKind(run))
	}
	var id, state, steps gjson.Result
	run.ForEach(func(key, value gjson.Result) bool {
		switch key.Str { // the last of a repeated key counts, as in a decode
		case "id":
			id = value
		case "state":
			state = value
		case "steps":
			steps = value
		}
		return true
	})
	switch id.Type {
	case gjson.Null:
	case gjson.Number:
		n, err := strconv.ParseInt(id.Raw, 10, 64)
		if err != nil {
			return h, fmt.Errorf("id %s is not a run ID", id.Raw)
		}
		h.ID = n
	default:
		return h, fmt.Errorf("id is %s, not a number", jsonKind(id))
	}
	switch state.Type {
	case gjson.Null:
	case gjson.String:
		h.State = workflow.State(state.Str)
	default:
		return h, fmt.Errorf("state is %s, not a string", jsonKind(state))
	}
	if steps.Type == gjson.Null {
		return h, nil
	}
	if !steps.IsArray() {
		return h, fmt.Errorf("steps is %s, not an array", jsonKind(steps))
	}
	var bad error
	steps.ForEach(func(_, step gjson.Result) bool {
		if step.Type == gjson.Null {
			return true
		}
		if !step.IsObject() {
			bad = fmt.Errorf("a step is %s, not an object", jsonKind(step))
			return false
		}
		switch status := step.Get("status"); status.Type {
		case gjson.Null:
		case gjson.String:
			h.StepRunning = h.StepRunning || workflow.StepStatus(status.Str) == workflow.StepRunning
		default:
			bad = fmt.Errorf("a step's status is %s, not a string", jsonKind(status))
			return false
		}
		return true
	})
	return h, bad
}

// jsonKind names the kind of a JSON value, for errors.
func jsonKind(r gjson.Result) string {
	switch {
	case r.IsObject():
		return "an object"
	case r.IsArray():
		return "an array"
	case r.Type == gjson.String:
		return "a string"
	case r.Type == gjson.Number:
		return "a number"
	case r.IsBool():
		return "a boolean"
	}
	return "null"
}

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
