package contracttest

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Span is when a fake served one request: from its handler's start to its
// answer, injected latency included. Benchmarks subtract spans from a run's
// time to find what the client itself spent.
type Span struct{ Start, End time.Time }

// Recorder records the requests a fake serves: which, and when. The zero
// value is ready to use; it is safe for concurrent use.
type Recorder struct {
	mu sync.Mutex
	// calls in chunks of recorderChunk: a benchmark records hundreds of
	// thousands, and growing one slice would copy them all, holding up the
	// request that did it (and the process's other work) for milliseconds.
	calls [][]recorded
	n     int
}

const recorderChunk = 1024

type recorded struct {
	method, path, uri string // uri: path and query
	span              Span   // End is zero until the request is answered
}

// Handler wraps h so that every request it serves is recorded when it
// arrives, and its end when it is answered.
func (rec *Recorder) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := recorded{method: r.Method, path: r.URL.Path, uri: r.URL.RequestURI(), span: Span{Start: time.Now()}}
		rec.mu.Lock()
		if rec.n%recorderChunk == 0 {
			rec.calls = append(rec.calls, make([]recorded, 0, recorderChunk))
		}
		chunk := &rec.calls[len(rec.calls)-1]
		*chunk = append(*chunk, c)
		at := &(*chunk)[len(*chunk)-1]
		rec.n++
		rec.mu.Unlock()
		defer func() {
			end := time.Now()
			rec.mu.Lock()
			at.span.End = end
			rec.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// Len is the number of requests received so far, cheaply: for polling.
func (rec *Recorder) Len() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.n
}

// Count counts the requests received with this method ("" for any) whose
// path (and query, withQuery) contains contains.
func (rec *Recorder) Count(method, contains string, withQuery bool) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, chunk := range rec.calls {
		for _, c := range chunk {
			target := c.path
			if withQuery {
				target = c.uri
			}
			if (method == "" || c.method == method) && strings.Contains(target, contains) {
				n++
			}
		}
	}
	return n
}

// Spans returns when each answered request was served, in the order they
// arrived.
func (rec *Recorder) Spans() []Span {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]Span, 0, rec.n)
	for _, chunk := range rec.calls {
		for _, c := range chunk {
			if !c.span.End.IsZero() {
				out = append(out, c.span)
			}
		}
	}
	return out
}
