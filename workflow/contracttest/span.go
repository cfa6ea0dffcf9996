package contracttest

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// Span is when a fake served one request: from its handler's start to its
// answer, injected latency included. Benchmarks subtract spans from a run's
// time to find what the client itself spent.
type Span struct{ Start, End time.Time }

// Spans records the spans of the requests a fake serves. The zero value is
// ready to use; it is safe for concurrent use.
type Spans struct {
	mu    sync.Mutex
	spans []Span
}

// Handler wraps h so that every request it serves is recorded.
func (s *Spans) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			end := time.Now()
			s.mu.Lock()
			s.spans = append(s.spans, Span{start, end})
			s.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// All returns the spans recorded so far, in the order the requests ended.
func (s *Spans) All() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.spans)
}
