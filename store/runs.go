package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

var _ workflow.Store = (*Store)(nil)

// CreateRun assigns r.ID and sets r.Version to 1, then writes the run and its
// events in one transaction. On success the events passed in get their
// RunID and Seq.
func (s *Store) CreateRun(ctx context.Context, r *workflow.Run, events ...workflow.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	if r == nil {
		return errors.New("create run: nil run")
	}
	if !r.State.Valid() {
		return fmt.Errorf("create run: invalid state %q", r.State)
	}
	// The run and its events are encoded here, not in the shared commit,
	// where every write of the group would wait for them: only the run's ID
	// is filled in there, in place. The encodings go to pooled buffers, kept
	// until the commit is over: bbolt holds on to the values until then.
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer encodeBuffers.Put(buf)
	pre, err := encodeNew(buf, r)
	if err != nil {
		return fmt.Errorf("create run: encode: %w", err)
	}
	evBuf := encodeBuffers.Get().(*bytes.Buffer)
	defer encodeBuffers.Put(evBuf)
	preEvents, err := encodeNewEvents(evBuf, events)
	if err != nil {
		return fmt.Errorf("create run: encode: %w", err)
	}
	var (
		id      int64
		written []workflow.Event
	)
	err = s.update(func(tx *bolt.Tx) error {
		var err error
		id, written, err = createRun(tx, r, pre, events, preEvents...)
		return err
	})
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	r.ID, r.Version = id, 1
	copy(events, written)
	return nil
}

// encodeBuffers hold the encodings of new runs until they are committed.
var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodeNew encodes r as the new run it becomes, with ID 0 and Version 1,
// into buf, and leaves r as it was.
func encodeNew(buf *bytes.Buffer, r *workflow.Run) ([]byte, error) {
	id, version := r.ID, r.Version
	r.ID, r.Version = 0, 1
	defer func() { r.ID, r.Version = id, version }()
	buf.Reset()
	if err := encodeTo(buf, r); err != nil {
		return nil, err
	}
	// Room for the ID's digits, so that withID allocates nothing inside
	// the commit: what a goroutine allocates while the collector marks, it
	// pays for by marking too, and the whole group waits for the leader.
	buf.Grow(maxIDDigits)
	return buf.Bytes(), nil
}

// encodeNewEvents encodes a new run's events as createRun writes them, with
// RunID 0 and Seq 1, 2, …, into buf, each followed by room for the run ID's
// digits (see withID). The encodings share buf's memory.
func encodeNewEvents(buf *bytes.Buffer, events []workflow.Event) ([][]byte, error) {
	if len(events) == 0 {
		return nil, nil
	}
	buf.Reset()
	ends := make([]int, len(events))
	for i := range events {
		ev := events[i]
		ev.RunID, ev.Seq = 0, uint64(i+1)
		if err := encodeTo(buf, &ev); err != nil {
			return nil, fmt.Errorf("event %d: %w", i+1, err)
		}
		ends[i] = buf.Len()
		buf.Write(idRoom[:])
	}
	b := buf.Bytes()
	out := make([][]byte, len(events))
	start := 0
	for i, end := range ends {
		// Capped at the room, so that filling in the ID in place never
		// writes over the next event.
		out[i] = b[start : end : end+maxIDDigits]
		start = end + maxIDDigits
	}
	return out, nil
}

var idRoom [maxIDDigits]byte

// GetRun returns a copy of the run, or an error wrapping workflow.ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id int64) (*workflow.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get run %d: %w", id, err)
	}
	var r *workflow.Run
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		r, err = s.getRun(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get run %d: %w", id, err)
	}
	return r, nil
}

// UpdateRun loads the run, calls fn on it and, when fn returns nil, bumps
// Version and writes the run and fn's events, all in one write transaction.
// An error of fn is returned as it is and nothing is written. bbolt runs one
// write transaction at a time, so fn sees the latest version and no other
// writer interleaves: this is the engine's compare-and-set. fn is called at
// most once, even when the commit is shared with other writes.
func (s *Store) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("update run %d: %w", id, err)
	}
	var (
		out            *workflow.Run
		encoded        []byte
		fnErr          error
		events, stored []workflow.Event
	)
	err := s.update(func(tx *bolt.Tx) error {
		r, err := s.getRun(tx, id)
		if err != nil {
			// Nothing is written yet: a run that does not decode fails its
			// own update, not the others sharing the commit.
			return errSkip(err)
		}
		old := r.State
		version := r.Version
		events, err = callFn(fn, r)
		if err != nil {
			fnErr = err
			return errSkip(err)
		}
		switch {
		case r.ID != id:
			return errSkip(fmt.Errorf("fn changed the run's ID to %d", r.ID))
		case !r.State.Valid():
			return errSkip(fmt.Errorf("invalid state %q", r.State))
		}
		r.Version = version + 1
		if encoded, err = putRun(tx, r, old); err != nil {
			return err
		}
		if stored, err = appendEvents(tx, id, events); err != nil {
			return err
		}
		out = r
		return nil
	})
	switch {
	case errors.Is(err, errShared):
		// The group rolled back: fn saw changes that never held, so a
		// refusal it made on them does not hold either.
		return nil, fmt.Errorf("update run %d: %w", id, err)
	case fnErr != nil:
		return nil, fnErr
	case err != nil:
		return nil, fmt.Errorf("update run %d: %w", id, err)
	}
	// A caller that kept fn's slice sees the RunID and Seq of its events.
	copy(events, stored)
	// The writer reads the run next (the engine's driver, at once): it
	// finds this decoding instead of decoding what it just encoded. Outside
	// the commit, which every write of the group waits for.
	s.memo.remember(id, encoded, out)
	return out, nil
}

// callFn calls the caller's fn, marking a panic in it as the caller's.
func callFn(fn func(r *workflow.Run) ([]workflow.Event, error), r *workflow.Run) ([]workflow.Event, error) {
	defer func() {
		if p := recover(); p != nil {
			panic(callerPanic{p})
		}
	}()
	return fn(r)
}

// AppendEvents adds events to a run's log without changing the run.
func (s *Store) AppendEvents(ctx context.Context, id int64, events ...workflow.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append events to run %d: %w", id, err)
	}
	var written []workflow.Event
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRuns).Get(runKey(id)) == nil {
			return errSkip(workflow.ErrNotFound)
		}
		var err error
		written, err = appendEvents(tx, id, events)
		return err
	})
	if err != nil {
		return fmt.Errorf("append events to run %d: %w", id, err)
	}
	copy(events, written)
	return nil
}

// ListRuns returns runs newest first. A filter on non-terminal states, or
// on a running step, only reads the open index, so it stays fast (and
// leaves the finished runs' pages unread) however many runs have finished.
func (s *Store) ListRuns(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	if opts.Limit < 0 {
		return nil, fmt.Errorf("list runs: %w: negative limit %d", workflow.ErrInvalidRequest, opts.Limit)
	}
	want := make(map[workflow.State]bool, len(opts.States))
	onlyOpen := len(opts.States) > 0
	for _, st := range opts.States {
		if !st.Valid() {
			return nil, fmt.Errorf("list runs: %w: unknown state %q", workflow.ErrInvalidRequest, st)
		}
		want[st] = true
		onlyOpen = onlyOpen && !st.Terminal()
	}
	var out []*workflow.Run
	err := s.view(func(tx *bolt.Tx) error {
		runs := tx.Bucket(bucketRuns)
		full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
		if onlyOpen || opts.RunningStep {
			c := tx.Bucket(bucketOpen).Cursor()
			for k, v := seekBefore(c, opts.BeforeID); k != nil && !full(); k, v = c.Prev() {
				if len(want) > 0 && !want[workflow.State(v)] {
					continue
				}
				r, err := s.memo.decode(k, runs.Get(k), true)
				if err != nil {
					return err
				}
				if opts.RunningStep && r.RunningStep() == nil {
					continue
				}
				out = append(out, r)
			}
			return nil
		}
		c := runs.Cursor()
		for k, v := seekBefore(c, opts.BeforeID); k != nil && !full(); k, v = c.Prev() {
			if len(want) > 0 {
				// Decoding only the state skips most of the work for runs
				// the filter drops.
				var head struct {
					State workflow.State `json:"state"`
				}
				if err := unmarshal(v, &head); err != nil {
					return fmt.Errorf("%w: run %d does not decode: %w", ErrInvalid, keyID(k), err)
				}
				if !want[head.State] {
					continue
				}
			}
			r, err := s.memo.decode(k, v, false)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// Events returns a run's events oldest first, or an error wrapping
// workflow.ErrNotFound when the run does not exist.
func (s *Store) Events(ctx context.Context, id int64) ([]workflow.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("events of run %d: %w", id, err)
	}
	var out []workflow.Event
	err := s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRuns).Get(runKey(id)) == nil {
			return workflow.ErrNotFound
		}
		prefix := runKey(id)
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e workflow.Event
			if err := unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: event %d of run %d does not decode: %w", ErrInvalid, binary.BigEndian.Uint64(k[8:]), id, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events of run %d: %w", id, err)
	}
	return out, nil
}

// createRun writes a copy of r under the next ID, at version 1, with its
// events, and returns the ID and the events as written. encoded is r's
// encoding with ID 0 and version 1, made before the commit (nil: encode r
// here); encodedEvents, when given, are the events' (see encodeNewEvents).
// r itself is not changed: the caller's run changes only once the commit
// succeeded.
func createRun(tx *bolt.Tx, r *workflow.Run, encoded []byte, events []workflow.Event, encodedEvents ...[]byte) (int64, []workflow.Event, error) {
	seq, err := tx.Bucket(bucketRuns).NextSequence()
	if err != nil {
		return 0, nil, fmt.Errorf("next run id: %w", err)
	}
	if seq > math.MaxInt64 {
		return 0, nil, errors.New("run ids exhausted")
	}
	id := int64(seq)
	if v, ok := withID(encoded, id); ok {
		err = putEncoded(tx, id, r.State, "", indexed(r), v)
	} else {
		c := *r
		c.ID, c.Version = id, 1
		_, err = putRun(tx, &c, "")
	}
	if err != nil {
		return 0, nil, err
	}
	if len(encodedEvents) == len(events) && len(events) > 0 {
		written, ok, err := putNewEvents(tx, id, events, encodedEvents)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			return id, written, nil
		}
	}
	written, err := appendEvents(tx, id, events)
	if err != nil {
		return 0, nil, err
	}
	return id, written, nil
}

// putNewEvents writes the first events of the new run id from their
// encodings with RunID 0 and Seq 1, 2, …, and returns them as written. It
// writes nothing and returns false when the run already has events (left by
// a run of the same ID in a damaged file) or an encoding is not as expected:
// appendEvents then encodes them after the ones there.
func putNewEvents(tx *bolt.Tx, id int64, events []workflow.Event, encoded [][]byte) ([]workflow.Event, bool, error) {
	b := tx.Bucket(bucketEvents)
	if lastSeq(b.Cursor(), id) != 0 {
		return nil, false, nil
	}
	for _, v := range encoded {
		if !bytes.HasPrefix(v, unnumberedEvent) {
			return nil, false, nil
		}
	}
	b.FillPercent = appendFill
	out := slices.Clone(events)
	for i, v := range encoded {
		seq := uint64(i + 1)
		out[i].RunID, out[i].Seq = id, seq
		v, _ = withNumber(v, unnumberedEvent, id)
		if err := b.Put(eventKey(id, seq), v); err != nil {
			return nil, true, fmt.Errorf("write event %d of run %d: %w", seq, id, err)
		}
	}
	return out, true, nil
}

// unnumbered is how a run with ID 0 encodes: "id" is Run's first field.
var unnumbered = []byte(`{"id":0,`)

// unnumberedEvent is how an event of run 0 encodes: "run_id" is Event's
// first field.
var unnumberedEvent = []byte(`{"run_id":0,`)

// maxIDDigits is the most digits a run ID has beyond the one of ID 0.
const maxIDDigits = len("9223372036854775807") - 1

// withID turns the encoding of a run with ID 0 into that of the same run
// with ID id (false if the encoding does not start as expected). It works
// in place when encoded has the capacity, and encoded is then changed.
func withID(encoded []byte, id int64) ([]byte, bool) { return withNumber(encoded, unnumbered, id) }

// withNumber turns an encoding that starts with prefix, a field whose value
// is 0 (`{"id":0,`), into the same with the value n.
func withNumber(encoded, prefix []byte, n int64) ([]byte, bool) {
	if !bytes.HasPrefix(encoded, prefix) {
		return nil, false
	}
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], n, 10)
	at := len(prefix) - len("0,")
	size := len(encoded) + len(d) - 1
	if cap(encoded) < size {
		v := make([]byte, 0, size)
		v = append(v, encoded[:at]...)
		v = append(v, d...)
		return append(v, encoded[at+1:]...), true
	}
	v := encoded[:size]
	copy(v[at+len(d):], encoded[at+1:]) // copy moves overlapping bytes correctly
	copy(v[at:], d)
	return v, true
}

// appendFill is the fill percent of the runs and events buckets. bbolt's
// default (half full) suits random inserts; new runs and events always go
// at the end, so fuller pages waste less space.
const appendFill = 0.9

// putRun writes r and moves it in the indexes from the state it had (""
// for a new run) to its current one.
func putRun(tx *bolt.Tx, r *workflow.Run, from workflow.State) (encoded []byte, err error) {
	v, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode run %d: %w", r.ID, err)
	}
	return v, putEncoded(tx, r.ID, r.State, from, indexed(r), v)
}

// indexed reports whether r belongs in the open index: it is open, or it
// ended with a step still running (a cancel leaves a call in flight to
// record its result), which the engine settles at its next start.
func indexed(r *workflow.Run) bool { return !r.State.Terminal() || r.RunningStep() != nil }

// putEncoded writes the run encoded as v, now in state st, and moves it in
// the indexes from the state it had ("" for a new run); index says whether
// it belongs in the open index.
func putEncoded(tx *bolt.Tx, id int64, st, from workflow.State, index bool, v []byte) error {
	k := runKey(id)
	runs := tx.Bucket(bucketRuns)
	runs.FillPercent = appendFill
	if err := runs.Put(k, v); err != nil {
		return fmt.Errorf("write run %d: %w", id, err)
	}
	open := tx.Bucket(bucketOpen)
	var err error
	switch was := open.Get(k); {
	case index && string(was) != string(st):
		err = open.Put(k, []byte(st))
	case !index && was != nil:
		err = open.Delete(k)
	}
	if err != nil {
		return fmt.Errorf("index run %d: %w", id, err)
	}
	if from == st {
		return nil
	}
	if from != "" {
		if err := addCount(tx, from, -1); err != nil {
			return err
		}
	}
	return addCount(tx, st, 1)
}

// addCount adds delta to the number of runs in state st.
func addCount(tx *bolt.Tx, st workflow.State, delta int64) error {
	counts := tx.Bucket(bucketCounts)
	var n uint64
	if v := counts.Get([]byte(st)); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n = uint64(int64(n) + delta)
	if err := counts.Put([]byte(st), binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return fmt.Errorf("count %s: %w", st, err)
	}
	return nil
}

// appendEvents writes events after the run's last one and returns them with
// RunID and Seq assigned.
func appendEvents(tx *bolt.Tx, id int64, events []workflow.Event) ([]workflow.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	b := tx.Bucket(bucketEvents)
	b.FillPercent = appendFill
	seq := lastSeq(b.Cursor(), id)
	out := slices.Clone(events)
	for i := range out {
		seq++
		out[i].RunID, out[i].Seq = id, seq
		v, err := marshal(&out[i])
		if err != nil {
			return nil, fmt.Errorf("encode event %d of run %d: %w", seq, id, err)
		}
		if err := b.Put(eventKey(id, seq), v); err != nil {
			return nil, fmt.Errorf("write event %d of run %d: %w", seq, id, err)
		}
	}
	return out, nil
}

// lastSeq is the Seq of the run's latest event, 0 when it has none.
func lastSeq(c *bolt.Cursor, id int64) uint64 {
	k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(id)+1))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, runKey(id)) {
		return 0
	}
	return binary.BigEndian.Uint64(k[8:])
}

func (s *Store) getRun(tx *bolt.Tx, id int64) (*workflow.Run, error) {
	k := runKey(id)
	v := tx.Bucket(bucketRuns).Get(k)
	if v == nil {
		return nil, workflow.ErrNotFound
	}
	return s.memo.decode(k, v, true)
}

// decodeRun decodes a stored run; the result shares no memory with v, which
// is only valid inside the transaction.
func decodeRun(k, v []byte) (*workflow.Run, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: run %d is indexed but missing", ErrInvalid, keyID(k))
	}
	var r workflow.Run
	if err := unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("%w: run %d does not decode: %w", ErrInvalid, keyID(k), err)
	}
	return &r, nil
}

// seekBefore positions c on the last key below beforeID (on the last key
// when beforeID is 0 or less).
func seekBefore(c *bolt.Cursor, beforeID int64) (k, v []byte) {
	if beforeID <= 0 {
		return c.Last()
	}
	if k, _ := c.Seek(runKey(beforeID)); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// runKey is the 8-byte big-endian key of a run, so keys sort by ID; it is
// also the prefix of the run's event keys.
func runKey(id int64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(id)) }

func eventKey(id int64, seq uint64) []byte {
	k := make([]byte, 0, 16)
	k = binary.BigEndian.AppendUint64(k, uint64(id))
	return binary.BigEndian.AppendUint64(k, seq)
}

func keyID(k []byte) int64 {
	if len(k) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k))
}
