package store

import (
	"bytes"
	"sync"

	"github.com/ssobot/ssobot/workflow"
)

// runMemo remembers the last decoding of each recently read run, keyed by
// the exact bytes it was decoded from. Decoding a run's JSON was most of
// the work of a status request and of every engine read; a run whose
// stored bytes have not changed since is copied instead.
//
// Entries are only ever compared with the bytes a transaction reads, so a
// stale, evicted or rolled-back entry can cost a decode but never returns
// anything other than what is stored: there is nothing to invalidate.
type runMemo struct {
	mu      sync.Mutex
	entries map[int64]memoEntry
	max     int
}

// memoEntry is immutable once stored: raw is a copy made for it, or the
// encoding a write committed, which nothing writes to again; run is never
// handed out, only clones of it.
type memoEntry struct {
	raw []byte
	run *workflow.Run
}

// memoRuns bounds the memo. Only open runs are kept: they are the hot set
// (the engine reads and rewrites them, people ask about them and click on
// them), and a finished run would hold its ~10 kB (bytes and decoding) for
// nothing once the service is idle.
const memoRuns = 256

func newRunMemo(max int) *runMemo {
	return &runMemo{entries: make(map[int64]memoEntry, max), max: max}
}

// decode returns a copy of the run stored as v under k, decoding v only
// when it is not the bytes last decoded for that run. A decoding is
// remembered only when keep is set (a scan of the history would otherwise
// push the hot runs out) and the run is open.
func (m *runMemo) decode(k, v []byte, keep bool) (*workflow.Run, error) {
	if v == nil {
		return decodeRun(k, v)
	}
	id := keyID(k)
	m.mu.Lock()
	e, ok := m.entries[id]
	m.mu.Unlock()
	if ok && bytes.Equal(e.raw, v) {
		return e.run.Clone(), nil
	}
	r, err := decodeRun(k, v)
	switch {
	case err != nil || !keep:
	case r.State.Terminal():
		if ok {
			m.forget(id)
		}
	default:
		m.put(id, memoEntry{raw: bytes.Clone(v), run: r.Clone()})
	}
	return r, err
}

// remember records r, just committed as encoded, as the decoding of those
// bytes (which nobody writes to again), by the same rule as decode: only
// an open run is kept. r stays the caller's. It is the decoding only if r
// round-trips through JSON: the engine writes times in UTC and nothing the
// encoding drops, which its tests check on every write (canonicalStore).
func (m *runMemo) remember(id int64, encoded []byte, r *workflow.Run) {
	if r.State.Terminal() {
		m.forget(id)
		return
	}
	m.put(id, memoEntry{raw: encoded, run: r.Clone()})
}

func (m *runMemo) forget(id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, id)
}

func (m *runMemo) put(id int64, e memoEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[id]; !ok && len(m.entries) >= m.max {
		for old := range m.entries { // any one: map order is unspecified
			delete(m.entries, old)
			break
		}
	}
	m.entries[id] = e
}

func (m *runMemo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
