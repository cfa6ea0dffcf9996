package workflow

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"unicode/utf8"
)

func (e *Engine) validate(req Request) (Request, error) {
	req.ApplicationName = strings.TrimSpace(req.ApplicationName)
	if err := ValidateName("application name", req.ApplicationName); err != nil {
		return req, err
	}
	if req.ApplicationSlug == "" {
		req.ApplicationSlug = Slugify(req.ApplicationName)
		if req.ApplicationSlug == "" {
			return req, fmt.Errorf("%w: no slug can be made from %q; give one with slug=<slug> (lowercase letters, digits and dashes)", ErrInvalidRequest, req.ApplicationName)
		}
	} else {
		req.ApplicationSlug = strings.ToLower(strings.TrimSpace(req.ApplicationSlug))
	}
	if err := ValidateSlug(req.ApplicationSlug); err != nil {
		return req, err
	}
	if req.TeamDomain != "" {
		team, err := NormalizeTeamDomain(req.TeamDomain)
		if err != nil {
			return req, err
		}
		req.TeamDomain = team
	}
	if req.LoginMethodName == "" {
		req.LoginMethodName = defaultLoginMethodName(e.cfg.Defaults.LoginMethodName, req.ApplicationName)
	}
	req.LoginMethodName = strings.TrimSpace(req.LoginMethodName)
	if err := ValidateName("login method name", req.LoginMethodName); err != nil {
		return req, err
	}
	if strings.TrimSpace(req.RequestedBy) == "" {
		return req, fmt.Errorf("%w: the requester is unknown", ErrInvalidRequest)
	}
	return req, nil
}

func (e *Engine) start(ctx context.Context, req Request) (*Run, error) {
	req, err := e.validate(req)
	if err != nil {
		return nil, err
	}
	d := e.cfg.Defaults
	now := e.cfg.Clock.Now().UTC()
	r := &Run{
		State:   StatePending,
		Request: req,
		Params: Params{
			ApplicationName:       req.ApplicationName,
			ApplicationSlug:       req.ApplicationSlug,
			ProviderName:          "Provider for " + req.ApplicationName,
			TeamDomain:            req.TeamDomain,
			LoginMethodName:       req.LoginMethodName,
			ClientID:              newClientID(),
			AuthentikURL:          d.AuthentikURL,
			AuthorizationFlowSlug: d.AuthorizationFlow,
			InvalidationFlowSlug:  d.InvalidationFlow,
			SigningKeyName:        d.SigningKey,
			AccountID:             e.cfg.Access.AccountID(),
		},
		CreatedAt: now,
		UpdatedAt: now,
	}
	r.Params.setURLs()
	// Sized up front: a burst of new runs is allocation-bound (each
	// collection it causes slows the acknowledgements in flight).
	r.Steps = make([]Step, 0, len(Plan))
	for _, p := range Plan {
		r.Steps = append(r.Steps, Step{Name: p.Name, Kind: p.Kind, Status: StepPending})
	}
	events := make([]Event, 1, 3) // created, then preflight's started and intent
	events[0] = Event{At: now, Type: EventCreated, Actor: req.RequestedBy,
		Message: fmt.Sprintf("%s asked to set up %q (slug %s) as a Cloudflare Access login method", req.RequestedBy, req.ApplicationName, req.ApplicationSlug)}
	// Preflight's first attempt is recorded with the run: one commit for
	// both, on the acknowledgement's path and not after it.
	started, attempt, _, err := e.beginAttempt(r, StepPreflight)
	if err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	for _, ev := range started {
		ev.At = now
		events = append(events, ev)
	}
	// A change committed between the store's commit and the notification
	// below (a cancel by the new run's ID) waits for it: the front end
	// hears of the run's creation first.
	b := e.births.begin()
	defer e.births.end(b) // again, should the notifier panic
	if err := e.cfg.Store.CreateRun(ctx, r, events...); err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	e.births.stored(b, r.ID)
	e.setFresh(r.ID, intent{step: StepPreflight, attempt: attempt})
	e.notify(ctx, r, events)
	e.births.end(b)
	e.kick(r.ID)
	// r is the caller's now: the store keeps no reference to it, the
	// notifier got its own copy, and the driver reads the run afresh.
	return r, nil
}

// defaultLoginMethodName names a run's login method after its application:
// each application gets its own login method (its client ID and key URLs
// are the application's). Cloudflare names are not documented as unique,
// but preflight refuses a name another client's login method holds (people
// tell login methods apart by name), so a fixed default would fail every
// run after the first. A prefix that leaves no room for even "…" is kept
// whole with the application, and validation refuses the name as too long
// (a request may name its own).
func defaultLoginMethodName(prefix, app string) string {
	const dots = "…"
	room := MaxNameLength - utf8.RuneCountInString(prefix) - len(" ()")
	if r := []rune(app); len(r) > room && room >= 1 {
		app = string(r[:room-1]) + dots
	}
	return prefix + " (" + app + ")"
}

// setURLs derives the URLs Cloudflare and the verify step use.
func (p *Params) setURLs() {
	base := p.AuthentikURL
	p.AuthURL = base + "/application/o/authorize/"
	p.TokenURL = base + "/application/o/token/"
	p.CertsURL = base + "/application/o/" + p.ApplicationSlug + "/jwks/"
	p.DiscoveryURL = base + "/application/o/" + p.ApplicationSlug + "/.well-known/openid-configuration"
	if p.TeamDomain != "" {
		p.CallbackURL = "https://" + p.TeamDomain + "/cdn-cgi/access/callback"
	}
}

func trimSlash(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newClientID makes a 40-character client ID like authentik's own.
func newClientID() string { return randomString(40, alnum) }

// newToken makes an unguessable token of n random bytes' strength.
func newToken(n int) string { return randomString(n*2, "abcdefghijklmnopqrstuvwxyz234567") }

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails (it panics instead, per its documentation).
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func intentMessage(r *Run, name StepName, attempt int) string {
	p := r.Params
	switch name {
	case StepAuthentikProvider:
		return fmt.Sprintf("attempt %d: find or create provider %q with client_id %s", attempt, p.ProviderName, p.ClientID)
	case StepAuthentikApplication:
		return fmt.Sprintf("attempt %d: find or create application %q (slug %s)", attempt, p.ApplicationName, p.ApplicationSlug)
	case StepCloudflareLoginMethod:
		return fmt.Sprintf("attempt %d: find or create login method %q for client_id %s", attempt, p.LoginMethodName, p.ClientID)
	}
	return fmt.Sprintf("attempt %d of %s", attempt, name)
}
