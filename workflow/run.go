package workflow

import (
	"fmt"
	"slices"
	"time"
)

// State is the state of a run. The set is closed: every transition goes
// through CanTransition, which reads the one table below.
type State string

const (
	StatePending          State = "pending" // preflight is running
	StateAwaitingApproval State = "awaiting_approval"
	StateRunning          State = "running"
	StateSucceeded        State = "succeeded"
	StateFailed           State = "failed"
	StateRejected         State = "rejected"
	StateExpired          State = "expired"
	StateCancelled        State = "cancelled"
)

// States lists every state, in lifecycle order.
var States = []State{StatePending, StateAwaitingApproval, StateRunning, StateSucceeded, StateFailed, StateRejected, StateExpired, StateCancelled}

var transitions = map[State][]State{
	StatePending:          {StateAwaitingApproval, StateFailed, StateCancelled},
	StateAwaitingApproval: {StateRunning, StateRejected, StateExpired, StateCancelled},
	StateRunning:          {StateAwaitingApproval, StateSucceeded, StateFailed, StateCancelled},
	// A failed run can be retried from its failed step, and an expired one
	// from its gate.
	StateFailed:  {StatePending, StateRunning},
	StateExpired: {StateAwaitingApproval},
}

// CanTransition reports whether a run may move from one state to another.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// Terminal reports whether no work is left for the engine in this state.
// A failed run is terminal although a person may retry it.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateRejected, StateExpired, StateCancelled:
		return true
	}
	return false
}

// Retryable reports whether Retry acts on a run in this state (for someone
// who may control it): failed or expired. Retry decides by it, so front ends
// that must know what a retry would do can ask it without retrying.
func (s State) Retryable() bool { return s == StateFailed || s == StateExpired }

// Valid reports whether s is one of the closed set of states.
func (s State) Valid() bool { return slices.Contains(States, s) }

// StepName names a step or a gate of a run.
type StepName string

const (
	StepPreflight             StepName = "preflight"
	GateAuthentik             StepName = "authentik"
	StepAuthentikProvider     StepName = "authentik-provider"
	StepAuthentikApplication  StepName = "authentik-application"
	GateCloudflare            StepName = "cloudflare"
	StepCloudflareLoginMethod StepName = "cloudflare-login-method"
	StepVerify                StepName = "verify"
)

// StepKind tells an action that talks to an API from a gate that waits for people.
type StepKind string

const (
	KindAction StepKind = "action"
	KindGate   StepKind = "gate"
)

// Plan is the fixed sequence of every run.
var Plan = []struct {
	Name StepName
	Kind StepKind
}{
	{StepPreflight, KindAction},
	{GateAuthentik, KindGate},
	{StepAuthentikProvider, KindAction},
	{StepAuthentikApplication, KindAction},
	{GateCloudflare, KindGate},
	{StepCloudflareLoginMethod, KindAction},
	{StepVerify, KindAction},
}

// StepStatus is the status of one step or gate.
type StepStatus string

const (
	StepPending   StepStatus = "pending"
	StepRunning   StepStatus = "running"   // an attempt is under way or waiting for its backoff
	StepWaiting   StepStatus = "waiting"   // a gate waiting for decisions
	StepSucceeded StepStatus = "succeeded" // for gates: approved
	StepFailed    StepStatus = "failed"
	StepRejected  StepStatus = "rejected"
	StepExpired   StepStatus = "expired"
	StepCancelled StepStatus = "cancelled"
)

// AttemptError records one failed attempt of a step.
type AttemptError struct {
	Attempt   int       `json:"attempt"`
	At        time.Time `json:"at"`
	Error     string    `json:"error"`
	Transient bool      `json:"transient"`
}

// Step is one step or gate of a run, with its attempts and error history.
type Step struct {
	Name     StepName   `json:"name"`
	Kind     StepKind   `json:"kind"`
	Status   StepStatus `json:"status"`
	Attempts int        `json:"attempts"`
	// Errors has one entry per failed attempt, oldest first.
	Errors        []AttemptError `json:"errors,omitempty"`
	StartedAt     time.Time      `json:"started_at,omitzero"`
	FinishedAt    time.Time      `json:"finished_at,omitzero"`
	NextAttemptAt time.Time      `json:"next_attempt_at,omitzero"`

	// RetriedAtAttempt is Attempts when a person last retried the run: the
	// retry budget counts attempts since then.
	RetriedAtAttempt int `json:"retried_at_attempt,omitempty"`

	// Gate fields.
	Required int       `json:"required,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	// RemindAt is when the approvers are to be reminded of the open gate;
	// zero once they have been, or when no reminder is due.
	RemindAt time.Time `json:"remind_at,omitzero"`
	// Nonce is the gate's callback token: a decision must carry it, so a
	// click on a stale message cannot decide a later gate.
	Nonce string `json:"nonce,omitempty"`
}

// LastError is the error of the latest failed attempt, or "".
func (s *Step) LastError() string {
	if len(s.Errors) == 0 {
		return ""
	}
	return s.Errors[len(s.Errors)-1].Error
}

// Request is what a person asks for. Empty fields take defaults.
type Request struct {
	ApplicationName string `json:"application_name"`
	ApplicationSlug string `json:"application_slug,omitempty"`
	TeamDomain      string `json:"team_domain,omitempty"`
	LoginMethodName string `json:"login_method_name,omitempty"`
	RequestedBy     string `json:"requested_by"`
	// Channel is where the request came from; opaque to the engine.
	Channel string `json:"channel,omitempty"`
}

// Params are the run's resolved parameters: all known and shown before the
// first approval.
type Params struct {
	ApplicationName string `json:"application_name"`
	ApplicationSlug string `json:"application_slug"`
	ProviderName    string `json:"provider_name"`
	TeamDomain      string `json:"team_domain,omitempty"` // empty until preflight when not requested
	LoginMethodName string `json:"login_method_name"`
	// ClientID is chosen by the run before anything is created, so a retried
	// create finds the provider instead of making a second one.
	ClientID string `json:"client_id"`

	AuthentikURL          string   `json:"authentik_url"`
	AuthorizationFlowSlug string   `json:"authorization_flow_slug"`
	InvalidationFlowSlug  string   `json:"invalidation_flow_slug"`
	SigningKeyName        string   `json:"signing_key_name"`
	AuthorizationFlowID   string   `json:"authorization_flow_id,omitempty"`
	InvalidationFlowID    string   `json:"invalidation_flow_id,omitempty"`
	SigningKeyID          string   `json:"signing_key_id,omitempty"`
	ScopeMappingIDs       []string `json:"scope_mapping_ids,omitempty"`

	AccountID    string `json:"account_id"`
	CallbackURL  string `json:"callback_url,omitempty"`
	AuthURL      string `json:"auth_url,omitempty"`
	TokenURL     string `json:"token_url,omitempty"`
	CertsURL     string `json:"certs_url,omitempty"`
	DiscoveryURL string `json:"discovery_url,omitempty"`
}

// Resources are the external IDs a run created.
type Resources struct {
	AuthentikProviderID          int    `json:"authentik_provider_id,omitempty"`
	AuthentikApplicationSlug     string `json:"authentik_application_slug,omitempty"`
	CloudflareIdentityProviderID string `json:"cloudflare_identity_provider_id,omitempty"`
}

// Decision is approve or reject.
type Decision string

const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// Approval is an accepted decision on a gate.
type Approval struct {
	Gate     StepName  `json:"gate"`
	User     string    `json:"user"`
	Decision Decision  `json:"decision"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason,omitempty"`
	// Lapsed marks an approval that does not count because its approver
	// was no longer one at the gate's latest decision; each decision sets
	// it again, so it counts once more if they are one again by then.
	Lapsed bool `json:"lapsed,omitempty"`
	// SetAside marks an approval given before its gate expired that does
	// not count in the gate opened again, since the approvals given before
	// would have passed it alone (the number required having been lowered
	// since): no decision clears it, or one approval given afterwards
	// could pass the gate with them. Runs stored before it existed have it
	// false.
	SetAside bool `json:"set_aside,omitempty"`
	// A lapsed or set-aside approval may be given again, replacing it.
}

// Run is one setup from request to verified login method. It both defines
// the run and holds its live state.
type Run struct {
	ID      int64  `json:"id"`
	State   State  `json:"state"`
	Version uint64 `json:"version"` // bumped on every write

	Request   Request    `json:"request"`
	Params    Params     `json:"params"`
	Steps     []Step     `json:"steps"`
	Approvals []Approval `json:"approvals,omitempty"`
	Resources Resources  `json:"resources"`

	// Problems lists what a failed preflight found, in words a person can act on.
	Problems []string `json:"problems,omitempty"`
	// Error is why the run failed, rejected, expired or was cancelled.
	Error string `json:"error,omitempty"`
	// DashboardURL is where a person tests the login method once it exists.
	DashboardURL string `json:"dashboard_url,omitempty"`
	// MessageRef is the bot's reference to the run's message; opaque to the engine.
	MessageRef string `json:"message_ref,omitempty"`
	// Delivered is the Seq of the last event the front end has delivered
	// for certain, so that after a restart it can finish what it had not.
	Delivered uint64 `json:"delivered,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Step returns the named step. Every run has every step of Plan.
func (r *Run) Step(name StepName) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Current is the first step that has not succeeded, or nil when all have.
func (r *Run) Current() *Step {
	for i := range r.Steps {
		if r.Steps[i].Status != StepSucceeded {
			return &r.Steps[i]
		}
	}
	return nil
}

// RunningStep is the first step in status running, or nil.
func (r *Run) RunningStep() *Step {
	for i := range r.Steps {
		if r.Steps[i].Status == StepRunning {
			return &r.Steps[i]
		}
	}
	return nil
}

// OpenGate is the gate waiting for decisions, or nil.
func (r *Run) OpenGate() *Step {
	if r.State != StateAwaitingApproval {
		return nil
	}
	if s := r.Current(); s != nil && s.Kind == KindGate && s.Status == StepWaiting {
		return s
	}
	return nil
}

// ApprovalsFor lists the decisions accepted on a gate.
// CountingApprovals counts the approvals of gate that count toward it.
func (r *Run) CountingApprovals(gate StepName) int {
	n := 0
	for _, a := range r.Approvals {
		if a.Counts(gate) {
			n++
		}
	}
	return n
}

// Counts reports whether a is an approval of gate that counts: neither
// lapsed nor set aside.
func (a Approval) Counts(gate StepName) bool {
	return a.Gate == gate && a.Decision == Approve && !a.Lapsed && !a.SetAside
}

// NotCounted says in a few words why a no longer counts, or "" if it
// still does: the bot's card, the admin API and `ssobot runs show` all
// word it so.
func (a Approval) NotCounted() string {
	switch {
	case a.SetAside:
		return "given before the gate expired and was opened again"
	case a.Lapsed:
		return "not an approver any more"
	}
	return ""
}

func (r *Run) ApprovalsFor(gate StepName) []Approval {
	var out []Approval
	for _, a := range r.Approvals {
		if a.Gate == gate {
			out = append(out, a)
		}
	}
	return out
}

// LastError is the most recent error of the run: its own, or its current step's.
func (r *Run) LastError() string {
	if r.Error != "" {
		return r.Error
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if e := r.Steps[i].LastError(); e != "" && r.Steps[i].Status != StepSucceeded {
			return e
		}
	}
	return ""
}

// Clone returns a deep copy, so callers can hold a run while the engine moves on.
func (r *Run) Clone() *Run {
	c := *r
	c.Params.ScopeMappingIDs = slices.Clone(r.Params.ScopeMappingIDs)
	c.Steps = slices.Clone(r.Steps)
	for i := range c.Steps {
		c.Steps[i].Errors = slices.Clone(r.Steps[i].Errors)
	}
	c.Approvals = slices.Clone(r.Approvals)
	c.Problems = slices.Clone(r.Problems)
	return &c
}

// transition moves the run to another state, refusing what the table forbids.
func (r *Run) transition(to State) error {
	if !CanTransition(r.State, to) {
		return fmt.Errorf("run %d: %w: %s to %s", r.ID, ErrInvalidTransition, r.State, to)
	}
	r.State = to
	return nil
}

// EventType classifies audit events.
type EventType string

const (
	EventCreated          EventType = "run.created"
	EventPlanned          EventType = "run.planned" // preflight passed; the plan is resolved
	EventStateChanged     EventType = "run.state_changed"
	EventStepStarted      EventType = "step.started"
	EventStepIntent       EventType = "step.intent" // about to call an API
	EventStepSucceeded    EventType = "step.succeeded"
	EventAttemptFailed    EventType = "step.attempt_failed"
	EventStepFailed       EventType = "step.failed"
	EventGateOpened       EventType = "gate.opened"
	EventDecisionAccepted EventType = "gate.decision_accepted"
	EventDecisionRefused  EventType = "gate.decision_refused"
	EventGateApproved     EventType = "gate.approved"
	EventGateRejected     EventType = "gate.rejected"
	EventGateExpired      EventType = "gate.expired"
	EventGateReminder     EventType = "gate.reminder" // the approvers are reminded before the deadline
	EventCancelled        EventType = "run.cancelled"
	EventCancelRefused    EventType = "run.cancel_refused"
	EventRetried          EventType = "run.retried"
	EventRetryRefused     EventType = "run.retry_refused"
	EventResourceFound    EventType = "resource.found"   // an earlier attempt had created it
	EventResourceCreated  EventType = "resource.created" // this attempt created it
	EventSucceeded        EventType = "run.succeeded"
	EventFailed           EventType = "run.failed"
	EventNote             EventType = "note" // anything else worth an audit line
)

// Event is one line of a run's append-only audit log. Events are written in
// the same transaction as the state change they describe.
type Event struct {
	RunID   int64             `json:"run_id"`
	Seq     uint64            `json:"seq"` // assigned by the store, increasing per run
	At      time.Time         `json:"at"`
	Type    EventType         `json:"type"`
	Step    StepName          `json:"step,omitempty"`
	Actor   string            `json:"actor,omitempty"` // a user ID, or empty for the engine
	Message string            `json:"message"`
	Data    map[string]string `json:"data,omitempty"`
}
