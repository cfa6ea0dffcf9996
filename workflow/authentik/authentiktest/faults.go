package authentiktest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// FaultKind is how a request fails.
type FaultKind string

const (
	// FaultStatus answers Fault.Status (503 when 0), with Fault.RetryAfter
	// as the Retry-After header when set.
	FaultStatus FaultKind = "status"
	// FaultReset drops the connection without an answer.
	FaultReset FaultKind = "reset"
	// FaultTimeout holds the request until the client gives up.
	FaultTimeout FaultKind = "timeout"
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultApplyThenReset applies the request (a create happens), then drops
	// the connection: the client never learns the outcome.
	FaultApplyThenReset FaultKind = "apply-then-reset"
)

// Fault makes matching requests fail.
type Fault struct {
	Method       string // "" matches any method
	PathContains string // matched against path and query; "" matches any
	Kind         FaultKind
	Status       int
	RetryAfter   string
	Times        int // 0: every matching call; n: the next n matching calls
}

// AddFault adds a fault. Faults are tried in the order added; the first
// that matches a request applies.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// SetFaultRate makes a random share of all calls fail with one of kinds
// (FaultStatus with 503 when none are given). The seed makes the sequence
// repeatable for the same order of calls. Rate 0 turns it off.
func (s *Server) SetFaultRate(rate float64, seed int64, kinds ...FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(kinds) == 0 {
		kinds = []FaultKind{FaultStatus}
	}
	s.faultRate = rate
	s.faultRNG = newRand(seed)
	s.faultKinds = append([]FaultKind(nil), kinds...)
}

// pickFault chooses the fault for a request, if any. s.mu must be held.
func (s *Server) pickFault(r *http.Request) *Fault {
	uri := r.URL.RequestURI()
	for i, f := range s.faults {
		if (f.Method != "" && f.Method != r.Method) || !strings.Contains(uri, f.PathContains) {
			continue
		}
		picked := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return &picked
	}
	if s.faultRate > 0 && s.faultRNG.Float64() < s.faultRate {
		kind := s.faultKinds[s.faultRNG.IntN(len(s.faultKinds))]
		return &Fault{Kind: kind, Status: http.StatusServiceUnavailable}
	}
	return nil
}

// fault applies f. It reports false when the request should be answered
// normally after all.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, body []byte, f *Fault) bool {
	switch f.Kind {
	case FaultStatus:
		status := f.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if status == http.StatusTooManyRequests {
			msg := "Request was throttled."
			if n, err := strconv.Atoi(f.RetryAfter); err == nil {
				msg = fmt.Sprintf("Request was throttled. Expected available in %d seconds.", n)
			}
			res := detail(status, msg)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(res.body)
			return true
		}
		// What a proxy in front of authentik answers.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
		return true
	case FaultReset:
		hijackReset(w)
		return true
	case FaultTimeout:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		// Never an answer: returning would send an empty 200 to a client
		// still waiting when Close released the request.
		hijackReset(w)
		return true
	case FaultMalformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"pk": 1, "name": "trunc`))
		return true
	case FaultApplyThenReset:
		_ = s.handle(r, body)
		hijackReset(w)
		return true
	}
	return false
}
