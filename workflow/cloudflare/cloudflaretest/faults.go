package cloudflaretest

import (
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
)

// FaultKind is a way for a call to go wrong.
type FaultKind string

const (
	// FaultStatus answers Fault.Status (e.g. 429 with RetryAfter, 500, 502,
	// 503) with an error envelope, without applying the request.
	FaultStatus FaultKind = "status"
	// FaultReset closes the connection without an answer.
	FaultReset FaultKind = "reset"
	// FaultTimeout holds the request until the client gives up (or Close).
	FaultTimeout FaultKind = "timeout"
	// FaultMalformed answers 200 with truncated JSON, without applying the request.
	FaultMalformed FaultKind = "malformed"
	// FaultApplyThenReset applies the request (a create happens), then
	// closes the connection: the answer is lost.
	FaultApplyThenReset FaultKind = "apply_then_reset"
)

// Fault makes matching calls fail.
type Fault struct {
	Method       string // "" for any
	PathContains string // "" for any
	Kind         FaultKind
	Status       int    // FaultStatus: the status (default 500)
	RetryAfter   string // FaultStatus: the retry-after header, if any
	Times        int    // how many calls fail; 0 = every one
}

type activeFault struct {
	Fault
	left int // calls left to fail; only when Times > 0
}

// AddFault adds a fault; the first matching one with calls left applies.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &activeFault{Fault: f, left: f.Times})
}

// ClearFaults removes the faults added with AddFault, used or not.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetFaultRate makes a share of calls fail at random (reproducibly for a
// seed) with one of kinds. Without kinds it picks status (429, 500, 502,
// 503), reset, malformed and apply-then-reset; timeout only when asked for,
// since it holds clients that have no deadline. rate 0 turns it off.
func (s *Server) SetFaultRate(rate float64, seed int64, kinds ...FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(kinds) == 0 {
		kinds = []FaultKind{FaultStatus, FaultReset, FaultMalformed, FaultApplyThenReset}
	}
	s.faultRate = rate
	s.faultKinds = slices.Clone(kinds)
	s.rng = mrand.New(mrand.NewPCG(uint64(seed), 0x5eed))
}

var randomStatuses = []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}

// fault picks the fault for a call, if any.
func (s *Server) fault(method, path string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Method != "" && f.Method != method || !strings.Contains(path, f.PathContains) {
			continue
		}
		if f.Times > 0 {
			if f.left == 0 {
				continue
			}
			f.left--
		}
		return f.Fault, true
	}
	if s.faultRate <= 0 || s.rng.Float64() >= s.faultRate {
		return Fault{}, false
	}
	f := Fault{Kind: s.faultKinds[s.rng.IntN(len(s.faultKinds))]}
	if f.Kind == FaultStatus {
		f.Status = randomStatuses[s.rng.IntN(len(randomStatuses))]
		if f.Status == http.StatusTooManyRequests {
			f.RetryAfter = "1"
		}
	}
	return f, true
}

func (s *Server) inject(w http.ResponseWriter, r *http.Request, body []byte, f Fault) {
	s.logger.Info("cloudflaretest fault", "method", r.Method, "path", r.URL.Path, "kind", string(f.Kind), "status", f.Status)
	switch f.Kind {
	case FaultStatus:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		code, msg := CodeInternal, fmt.Sprintf("injected %d", status)
		if status == http.StatusTooManyRequests {
			code, msg = CodeRateLimited, "Please wait and consider throttling your request speed"
		}
		res := failure(status, code, msg)
		if f.RetryAfter != "" {
			res.header.Set("Retry-After", f.RetryAfter)
		}
		s.write(w, r, res)
	case FaultReset:
		reset(w)
	case FaultTimeout:
		if s.onHold != nil {
			s.onHold(r.Method, r.URL.Path)
		}
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		// Never an answer: returning would send an empty 200 to a client
		// still waiting when Close released the request.
		reset(w)
	case FaultMalformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{"id":"`))
	case FaultApplyThenReset:
		_ = s.handle(r, body)
		reset(w)
	default:
		s.write(w, r, failure(http.StatusInternalServerError, CodeInternal, "unknown fault kind "+string(f.Kind)))
	}
}

// reset drops the connection without a response.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot hijack (HTTP/2): abort the handler, which resets the stream.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
