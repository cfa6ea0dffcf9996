package workflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNotFound: the run, or the external object looked up, does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidTransition: the state table forbids the change.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrRefused: a person's request (decision, cancel, retry) was refused;
	// the wrapping error says why in words for that person.
	ErrRefused = errors.New("refused")
	// ErrInvalidRequest: a request's parameters are malformed.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrConflict: another writer changed the run first.
	ErrConflict = errors.New("conflict")
)

// APIError is an error answered by authentik or Cloudflare, or a failure to
// reach them. Adapters return it so the engine can tell transient failures
// (retry with backoff) from permanent ones (fail the step with the API's own
// message). It never carries a secret.
type APIError struct {
	System     string // "authentik", "cloudflare", "https"
	Op         string // e.g. "create provider"
	Status     int    // HTTP status, 0 when no response came
	Code       int    // Cloudflare's error code, when given
	Message    string // the API's own message
	RetryAfter time.Duration
	Err        error // the underlying transport error, if any
	// Permanent marks a failure no retry can mend although no response came
	// (an untrusted certificate, a malformed URL).
	Permanent bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.System, e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, " (code %d)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *APIError) Unwrap() error {
	if e.Status == http.StatusNotFound && e.Err == nil {
		return ErrNotFound
	}
	return e.Err
}

// Transient reports whether trying again later may succeed: no response,
// a timeout, 429, 408 or any 5xx.
func (e *APIError) Transient() bool {
	switch {
	case e.Permanent:
		return false
	case e.Status == 0:
		return true
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Status >= 500:
		return true
	}
	return false
}

// IsTransient classifies any error of a step: API errors by status, network
// errors and timeouts as transient, everything else permanent.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var api *APIError
	if errors.As(err, &api) {
		return api.Transient()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// RetryAfter is the longest wait any API in err asked for, or 0. A step
// that called several APIs waits for the slowest of them, so a rate-limited
// token is not hit again before it is unblocked.
func RetryAfter(err error) time.Duration {
	var longest time.Duration
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
			return
		case *APIError:
			longest = max(longest, x.RetryAfter)
			walk(x.Err)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return longest
}

// MaxRetryAfter caps the wait a Retry-After asks for that the engine
// honours: the default RetryPolicy.Max, its own longest backoff, and as
// long as Cloudflare's rate-limit block. A server asking for more is asked
// again after this; a run is not parked for as long as any answer says
// (a year, say, or a value that overflows).
const MaxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads a Retry-After header (RFC 9110, section 10.2.3):
// delay-seconds (digits only) or an HTTP-date, relative to now. Anything
// else (empty, negative, fractional, NaN, infinite, a number that does not
// fit 64 bits, a date in the past) counts as no wait asked for: 0. A wait
// longer than MaxRetryAfter is cut to it.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0 // too large to be meant
		}
		if n >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter) // Sub saturates, never wraps
}

// RefusedError tells a person why their decision, cancel or retry was not
// accepted. Is(ErrRefused) holds.
type RefusedError struct {
	Reason string
	// DecidedBy names who decided first, when the gate was already decided.
	DecidedBy string
	// Kind, At and State let a front end word the common refusals itself
	// (with its own commands and dates); Reason stays the audit log's text.
	Kind     RefusalKind
	At       time.Time // RefusedExpired: the deadline; RefusedRepeat: the earlier decision
	Decision Decision  // RefusedRepeat: the earlier decision
	State    State     // RefusedRunState: the run's state
}

// RefusalKind names a refusal a front end may word itself; "" for others.
type RefusalKind string

const (
	RefusedOwnRun   RefusalKind = "own_run"   // the requester may not decide their own run
	RefusedExpired  RefusalKind = "expired"   // the gate's deadline passed before the decision
	RefusedRepeat   RefusalKind = "repeat"    // this person already decided this gate
	RefusedRunState RefusalKind = "run_state" // the run is not in a state that allows this
)

func (e *RefusedError) Error() string        { return e.Reason }
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refused(format string, args ...any) *RefusedError {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}
