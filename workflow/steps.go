package workflow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// outcome is what a successful call of a step produced: changes to record
// on the run, audit events, and for preflight the problems it found.
type outcome struct {
	apply    func(r *Run)
	events   []Event
	message  string
	data     map[string]string
	problems []string
	// createUnanswered: a create failed in a way that may have made its
	// object all the same, and nothing finds it by a unique key.
	createUnanswered bool
}

func (e *Engine) perform(ctx context.Context, r *Run, name StepName) (outcome, error) {
	switch name {
	case StepPreflight:
		return e.preflight(ctx, r)
	case StepAuthentikProvider:
		return e.createProvider(ctx, r)
	case StepAuthentikApplication:
		return e.createApplication(ctx, r)
	case StepCloudflareLoginMethod:
		return e.createLoginMethod(ctx, r)
	case StepVerify:
		return e.verify(ctx, r)
	}
	return outcome{}, fmt.Errorf("unknown step %q", name)
}

// permissionProblem words an API error for a person: a denied permission
// names what the token lacks.
func permissionProblem(err error, system, permission, what string) string {
	var api *APIError
	if errors.As(err, &api) && api.Status == 403 {
		switch system {
		case "authentik":
			return fmt.Sprintf("the authentik token lacks permission %s (needed to %s); authentik said: %s", permission, what, api.Message)
		case "cloudflare":
			return fmt.Sprintf("the Cloudflare API token may not %s: it needs \"Access: Organizations, Identity Providers, and Groups Write\"; Cloudflare said: %s", what, api.Message)
		}
	}
	return fmt.Sprintf("could not %s: %v", what, err)
}

// findings collects what one preflight check found: problems for a person,
// and transient errors that make the whole preflight try again.
type findings struct {
	problems  []string
	transient error
}

// check records err, if any, as transient or as the given problem, and
// reports whether there was none.
func (f *findings) check(err error, problem string) bool {
	if err == nil {
		return true
	}
	if IsTransient(err) {
		f.transient = errors.Join(f.transient, err)
	} else {
		f.problems = append(f.problems, problem)
	}
	return false
}

func (f *findings) add(problem string) { f.problems = append(f.problems, problem) }

// parallel runs the checks at once, each with its own findings, and merges
// those in the checks' order so the problems read the same every time.
func parallel(checks ...func(f *findings)) findings {
	results := make([]findings, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { c(&results[i]) })
	}
	wg.Wait()
	var all findings
	for _, r := range results {
		all.problems = append(all.problems, r.problems...)
		all.transient = errors.Join(all.transient, r.transient)
	}
	return all
}

// preflight reads everything the run needs and resolves the plan. The reads
// are independent, so they run at once: the plan is ready after about two
// round trips instead of ten. Transient errors retry the whole preflight;
// everything else becomes a problem.
func (e *Engine) preflight(ctx context.Context, r *Run) (outcome, error) {
	p := r.Params
	notFound := func(err error) bool { return errors.Is(err, ErrNotFound) }
	var (
		authFlow, invFlow Flow
		cert              Certificate
		scopes            []ScopeMapping
		team              = p.TeamDomain
	)
	authentikChecks := func(f *findings) {
		// A bad token fails every other call the same way: check it first.
		if _, err := e.cfg.Authentik.Me(ctx); err != nil {
			var api *APIError
			msg := fmt.Sprintf("the authentik token does not work: %v", err)
			if errors.As(err, &api) && api.Status == 403 {
				msg = fmt.Sprintf("the authentik token was refused (%s): create an API token (intent API, no expiry) for the ssobot service account and set AUTHENTIK_TOKEN", api.Message)
			}
			f.check(err, msg)
			return
		}
		sub := parallel(
			func(f *findings) {
				var err error
				authFlow, err = e.cfg.Authentik.FlowBySlug(ctx, "authorization", p.AuthorizationFlowSlug)
				if notFound(err) {
					f.add(fmt.Sprintf("no authorization flow with slug %q in authentik; set SSOBOT_AUTHORIZATION_FLOW to an existing one", p.AuthorizationFlowSlug))
				} else {
					f.check(err, permissionProblem(err, "authentik", "view_flow", "read the authorization flow"))
				}
			},
			func(f *findings) {
				var err error
				invFlow, err = e.cfg.Authentik.FlowBySlug(ctx, "invalidation", p.InvalidationFlowSlug)
				if notFound(err) {
					f.add(fmt.Sprintf("no invalidation flow with slug %q in authentik (required on providers since 2024.10); set SSOBOT_INVALIDATION_FLOW to an existing one", p.InvalidationFlowSlug))
				} else {
					f.check(err, permissionProblem(err, "authentik", "view_flow", "read the invalidation flow"))
				}
			},
			func(f *findings) {
				var err error
				cert, err = e.cfg.Authentik.CertificateByName(ctx, p.SigningKeyName)
				switch {
				case notFound(err):
					f.add(fmt.Sprintf("no certificate named %q in authentik: without a signing key tokens are signed HS256 and Cloudflare rejects them; set SSOBOT_SIGNING_KEY to a certificate with a private key", p.SigningKeyName))
				case err == nil && !cert.HasKey:
					f.add(fmt.Sprintf("the certificate %q in authentik has no private key, so it cannot sign tokens; set SSOBOT_SIGNING_KEY to a certificate with a private key", p.SigningKeyName))
				default:
					f.check(err, permissionProblem(err, "authentik", "view_certificatekeypair", "read the signing key"))
				}
			},
			func(f *findings) {
				var err error
				scopes, err = e.cfg.Authentik.ScopeMappings(ctx, RequiredScopes)
				if f.check(err, permissionProblem(err, "authentik", "view_scopemapping", "read the scope mappings")) {
					for _, want := range RequiredScopes {
						if !slices.ContainsFunc(scopes, func(s ScopeMapping) bool { return s.Managed == want }) {
							f.add(fmt.Sprintf("the scope mapping %s is missing in authentik: without it tokens lack claims Cloudflare needs", want))
						}
					}
				}
			},
			func(f *findings) {
				app, err := e.cfg.Authentik.ApplicationBySlug(ctx, p.ApplicationSlug)
				if err == nil && !e.belongsToRun(ctx, r, app.Provider) {
					f.add(fmt.Sprintf("an application with slug %q already exists in authentik; choose another with slug=<slug>", p.ApplicationSlug))
				} else if !notFound(err) {
					f.check(err, permissionProblem(err, "authentik", "view_application", "check that the application slug is free"))
				}
			},
			func(f *findings) {
				prov, err := e.cfg.Authentik.ProviderByName(ctx, p.ProviderName)
				if err == nil && prov.ClientID != p.ClientID {
					f.add(fmt.Sprintf("a provider named %q already exists in authentik; rename it or choose another application name", p.ProviderName))
				} else if !notFound(err) {
					f.check(err, permissionProblem(err, "authentik", "view_oauth2provider", "check that the provider name is free"))
				}
			},
		)
		*f = sub
	}
	found := parallel(
		authentikChecks,
		// Cloudflare sends every login back to the account's own team
		// domain: a given team= is checked against it, since authentik's
		// strict redirect URI would refuse any other.
		func(f *findings) {
			org, err := e.cfg.Access.Organization(ctx)
			if !f.check(err, permissionProblem(err, "cloudflare", "", "read the Zero Trust organization")) {
				return
			}
			switch {
			case org.AuthDomain == "":
				f.add("the Cloudflare account has no Zero Trust team domain yet: set one up in Zero Trust")
			case team == "":
				team = org.AuthDomain
			case !strings.EqualFold(team, org.AuthDomain):
				f.add(fmt.Sprintf("the team domain %s is not this Cloudflare account's (%s), which is where Cloudflare sends logins back: leave team= out, or give team=%s", team, org.AuthDomain, strings.TrimSuffix(org.AuthDomain, ".cloudflareaccess.com")))
			default:
				team = org.AuthDomain
			}
		},
		func(f *findings) {
			idps, err := e.cfg.Access.ListIdentityProviders(ctx)
			if !f.check(err, permissionProblem(err, "cloudflare", "", "list login methods")) {
				return
			}
			// The same rule as the step that creates it: free, or the run's own.
			switch named := loginMethodsNamed(idps, p); {
			case named.found():
			case len(named.unreadable) > 0:
				f.add(named.unreadableProblem(p))
			case named.others > 0:
				f.add(fmt.Sprintf("a login method named %q already exists in Cloudflare Access; choose another name with login=<name>", p.LoginMethodName))
			}
		},
		// The public URL, as Cloudflare will reach it.
		func(f *findings) {
			err := e.cfg.Endpoints.CheckTLS(ctx, p.AuthentikURL+"/")
			f.check(err, fmt.Sprintf("authentik's public URL %s must answer over HTTPS with a publicly trusted certificate (Cloudflare requires one): %v", p.AuthentikURL, err))
		},
	)
	problems, transient := found.problems, found.transient

	if transient != nil {
		return outcome{}, fmt.Errorf("preflight: %w", transient)
	}
	if len(problems) > 0 {
		return outcome{problems: problems}, nil
	}
	scopeIDs := make([]string, 0, len(RequiredScopes))
	for _, want := range RequiredScopes {
		i := slices.IndexFunc(scopes, func(s ScopeMapping) bool { return s.Managed == want })
		scopeIDs = append(scopeIDs, scopes[i].PK)
	}
	out := outcome{
		message: fmt.Sprintf("preflight passed: team domain %s, flows %s and %s, signing key %q", team, p.AuthorizationFlowSlug, p.InvalidationFlowSlug, p.SigningKeyName),
		apply: func(r *Run) {
			r.Params.TeamDomain = team
			r.Params.AuthorizationFlowID = authFlow.PK
			r.Params.InvalidationFlowID = invFlow.PK
			r.Params.SigningKeyID = cert.PK
			r.Params.ScopeMappingIDs = scopeIDs
			r.Params.setURLs()
			r.Problems = nil
		},
	}
	out.events = []Event{{Type: EventPlanned, Step: StepPreflight, Message: "plan resolved", Data: map[string]string{
		"team_domain": team, "callback_url": "https://" + team + "/cdn-cgi/access/callback",
		"provider_name": p.ProviderName, "application_slug": p.ApplicationSlug, "login_method": p.LoginMethodName,
	}}}
	return out, nil
}

// belongsToRun reports whether an existing application's provider is the
// one this run created (a retried run finds its own objects).
func (e *Engine) belongsToRun(ctx context.Context, r *Run, providerID int) bool {
	if providerID == 0 {
		return false
	}
	prov, err := e.cfg.Authentik.GetProvider(ctx, providerID)
	return err == nil && prov.ClientID == r.Params.ClientID
}

// firstAttempt reports whether no earlier attempt of the step can have
// reached the API: attempts are recorded before each call, so only the
// first may skip looking for what an earlier one made.
func firstAttempt(r *Run, name StepName) bool { return r.Step(name).Attempts == 1 }

func (e *Engine) createProvider(ctx context.Context, r *Run) (outcome, error) {
	p := r.Params
	// The client_id is new to this run: on a first attempt nobody can have
	// a provider with it yet.
	err := error(ErrNotFound)
	var prov Provider
	if !firstAttempt(r, StepAuthentikProvider) {
		prov, err = e.cfg.Authentik.ProviderByClientID(ctx, p.ClientID)
	}
	found := err == nil
	switch {
	case found:
	case errors.Is(err, ErrNotFound):
		prov, err = e.cfg.Authentik.CreateProvider(ctx, PlannedProvider(p))
	default:
		return outcome{}, opErr("find provider by client_id", err)
	}
	var out outcome
	id := prov.PK
	if id != 0 {
		// Recorded even when the provider is unusable: nothing created goes
		// without a record in its run.
		out.apply = func(r *Run) { r.Resources.AuthentikProviderID = id }
		out.events = []Event{resourceEvent(found, StepAuthentikProvider, "authentik provider", strconv.Itoa(id), p.ProviderName)}
	}
	if err != nil {
		return out, opErr("create provider", err)
	}
	if prov.SigningKey == "" {
		return out, &APIError{System: "authentik", Op: "create provider", Permanent: true,
			Message: fmt.Sprintf("provider %d has no signing key: tokens would be signed HS256 and Cloudflare would reject them", prov.PK)}
	}
	if prov.EncryptionKey != "" {
		return out, &APIError{System: "authentik", Op: "create provider", Permanent: true,
			Message: fmt.Sprintf("provider %d has an encryption key: Cloudflare cannot read encrypted tokens", prov.PK)}
	}
	out.message = fmt.Sprintf("provider %q is #%d (client_id %s)", p.ProviderName, id, p.ClientID)
	out.data = map[string]string{"provider_id": strconv.Itoa(id), "client_id": p.ClientID}
	return out, nil
}

func resourceEvent(found bool, step StepName, kind, id, name string) Event {
	if found {
		return Event{Type: EventResourceFound, Step: step, Message: fmt.Sprintf("found the %s %s (%s) an earlier attempt made", kind, id, name), Data: map[string]string{"id": id}}
	}
	return Event{Type: EventResourceCreated, Step: step, Message: fmt.Sprintf("created the %s %s (%s)", kind, id, name), Data: map[string]string{"id": id}}
}

func (e *Engine) createApplication(ctx context.Context, r *Run) (outcome, error) {
	p := r.Params
	providerID := r.Resources.AuthentikProviderID
	// Preflight found the slug free; if someone took it since, the create
	// fails with authentik's own message.
	err := error(ErrNotFound)
	var app Application
	if !firstAttempt(r, StepAuthentikApplication) {
		app, err = e.cfg.Authentik.ApplicationBySlug(ctx, p.ApplicationSlug)
	}
	found := err == nil
	switch {
	case found:
		if app.Provider != providerID {
			return outcome{}, &APIError{System: "authentik", Op: "create application", Permanent: true,
				Message: fmt.Sprintf("the slug %q is taken by another application; retry with another slug in a new run", p.ApplicationSlug)}
		}
	case errors.Is(err, ErrNotFound):
		app, err = e.cfg.Authentik.CreateApplication(ctx, PlannedApplication(p, providerID))
		if err != nil {
			return outcome{}, opErr("create application", err)
		}
	default:
		return outcome{}, opErr("find application by slug", err)
	}
	slug := app.Slug
	return outcome{
		apply:   func(r *Run) { r.Resources.AuthentikApplicationSlug = slug },
		events:  []Event{resourceEvent(found, StepAuthentikApplication, "authentik application", slug, p.ApplicationName)},
		message: fmt.Sprintf("application %q (slug %s) uses provider #%d", p.ApplicationName, slug, providerID),
		data:    map[string]string{"application_slug": slug},
	}, nil
}

// wrapErr names what failed, or returns nil.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// namedLoginMethods is what an account holds under a run's login method name.
type namedLoginMethods struct {
	// own are the run's own, in list order. More than one means a create
	// whose answer never came was applied all the same, beside a later one.
	own        []IdentityProvider
	others     int                // those that are not the run's
	unreadable []IdentityProvider // of the others, those whose config could not be read
}

// loginMethodsNamed looks at every login method with the run's name:
// Cloudflare names are not unique, so another's listed first must not hide
// the run's own (an OIDC one with the run's client_id), nor the run's first
// hide a second. One whose config could not be read may be the run's own:
// it is never taken for absent, so that no second one is created beside it.
func loginMethodsNamed(idps []IdentityProvider, p Params) namedLoginMethods {
	var n namedLoginMethods
	for _, x := range idps {
		switch {
		case x.Name != p.LoginMethodName:
		case x.Unreadable == "" && x.Type == "oidc" && x.Config.ClientID == p.ClientID:
			n.own = append(n.own, x)
		default:
			n.others++
			if x.Unreadable != "" {
				n.unreadable = append(n.unreadable, x)
			}
		}
	}
	return n
}

func (n namedLoginMethods) found() bool { return len(n.own) > 0 }

// adopt picks the run's login method among its own: the one recorded on
// the run when it is listed, else the first listed, so that every look at
// the same list keeps the same one. The rest are duplicates for a person
// to delete (ssobot deletes nothing).
func (n namedLoginMethods) adopt(recorded string) (kept IdentityProvider, extras []IdentityProvider) {
	i := slices.IndexFunc(n.own, func(x IdentityProvider) bool { return x.ID == recorded })
	if i < 0 {
		i = 0
	}
	return n.own[i], n.except(n.own[i].ID)
}

// except is the run's own login methods but the one with the given ID.
func (n namedLoginMethods) except(id string) []IdentityProvider {
	var rest []IdentityProvider
	for _, x := range n.own {
		if x.ID != id {
			rest = append(rest, x)
		}
	}
	return rest
}

// duplicatesProblem tells a person which login methods duplicate the run's
// own and what to do: each holds the run's client_id and client secret, a
// second way in that nobody tracks, so it must go.
func duplicatesProblem(p Params, kept string, extras []IdentityProvider) string {
	ids := make([]string, 0, len(extras))
	for _, x := range extras {
		ids = append(ids, x.ID)
	}
	what := "another login method"
	if len(extras) > 1 {
		what = fmt.Sprintf("%d other login methods", len(extras))
	}
	return fmt.Sprintf("Cloudflare holds %s named %q with this run's client_id, and so its client secret, beside %s, the one the run keeps: %s (a create whose answer never came was applied all the same). ssobot deletes nothing: delete %s at https://one.dash.cloudflare.com/%s/settings/authentication and keep %s",
		what, p.LoginMethodName, kept, strings.Join(ids, ", "), strings.Join(ids, ", "), p.AccountID, kept)
}

// duplicatesData lists the duplicate login methods' IDs in an event.
func duplicatesData(kept string, extras []IdentityProvider) map[string]string {
	ids := make([]string, 0, len(extras))
	for _, x := range extras {
		ids = append(ids, x.ID)
	}
	return map[string]string{"identity_provider_id": kept, "duplicate_identity_provider_ids": strings.Join(ids, ",")}
}

// unreadableProblem names the login methods with the run's name that
// ssobot could not read, for a person to look at.
func (n namedLoginMethods) unreadableProblem(p Params) string {
	ids := make([]string, 0, len(n.unreadable))
	for _, x := range n.unreadable {
		ids = append(ids, fmt.Sprintf("%s (type %s: %s)", x.ID, x.Type, x.Unreadable))
	}
	what := "the login method"
	if len(ids) > 1 {
		what = "the login methods"
	}
	return fmt.Sprintf("%s named %q in Cloudflare Access, ID %s, cannot be read by ssobot, which cannot tell whether it is this run's: check it in Zero Trust and remove or rename it, or start a new run with login=<name>",
		what, p.LoginMethodName, strings.Join(ids, ", "))
}

func (e *Engine) createLoginMethod(ctx context.Context, r *Run) (outcome, error) {
	p := r.Params
	idps, err := e.cfg.Access.ListIdentityProviders(ctx)
	if err != nil {
		return outcome{}, opErr("list login methods", err)
	}
	named := loginMethodsNamed(idps, p)
	found := named.found()
	var idp IdentityProvider
	var extras []IdentityProvider
	switch {
	case found:
		idp, extras = named.adopt(r.Resources.CloudflareIdentityProviderID)
	case len(named.unreadable) > 0:
		return outcome{}, &APIError{System: "cloudflare", Op: "create login method", Permanent: true, Message: named.unreadableProblem(p)}
	case named.others > 0:
		return outcome{}, &APIError{System: "cloudflare", Op: "create login method", Permanent: true,
			Message: fmt.Sprintf("a login method named %q now exists for another client; remove it or start a new run with login=<name>", p.LoginMethodName)}
	}
	if !found {
		secret, err := e.cfg.Authentik.ClientSecret(ctx, r.Resources.AuthentikProviderID)
		if err != nil {
			return outcome{}, fmt.Errorf("read client secret: %w", err)
		}
		idp, err = e.cfg.Access.CreateIdentityProvider(ctx, IdentityProviderSpec{
			Name: p.LoginMethodName, Config: PlannedLoginMethod(p), ClientSecret: secret,
		})
		if err != nil {
			return outcome{createUnanswered: mayHaveCreated(err)}, opErr("create login method", err)
		}
	}
	id := idp.ID
	events := []Event{resourceEvent(found, StepCloudflareLoginMethod, "Cloudflare login method", id, p.LoginMethodName)}
	if len(extras) > 0 {
		// Kept going: the run's own works, and verify fails until the
		// duplicates are gone, so that the run cannot end succeeded.
		events = append(events, Event{Type: EventNote, Step: StepCloudflareLoginMethod,
			Message: duplicatesProblem(p, id, extras) + "; until then verify fails", Data: duplicatesData(id, extras)})
	}
	return outcome{
		apply:   func(r *Run) { r.Resources.CloudflareIdentityProviderID = id },
		events:  events,
		message: fmt.Sprintf("login method %q is %s", p.LoginMethodName, id),
		data:    map[string]string{"identity_provider_id": id},
	}, nil
}

// mayHaveCreated reports whether a failed create may have been applied all
// the same: it failed transiently (no answer, a garbled one, a 5xx a proxy
// may give for a request its origin went on to apply), but not with a 429,
// by which the server refused it unread.
func mayHaveCreated(err error) bool {
	var api *APIError
	return IsTransient(err) && !(errors.As(err, &api) && api.Status == http.StatusTooManyRequests)
}

// verify reads back what Cloudflare holds and checks it against authentik's
// public discovery document and keys, the way Cloudflare will use them.
func (e *Engine) verify(ctx context.Context, r *Run) (outcome, error) {
	p := r.Params
	var mismatches []string
	// One attempt of the login method step makes at most one create; after
	// more, an earlier one may have been applied after the list that
	// reconciled it (late, or on a page the list missed), so the login
	// methods are counted again. A normal run skips that list.
	recount := r.Step(StepCloudflareLoginMethod).Attempts > 1
	// The reads are independent: make them at once.
	var (
		idp                                     IdentityProvider
		idps                                    []IdentityProvider
		disc                                    Discovery
		keys                                    JWKS
		prov                                    Provider
		idpErr, listErr, discErr, keysErr, pErr error
		wg                                      sync.WaitGroup
	)
	wg.Go(func() { idp, idpErr = e.cfg.Access.GetIdentityProvider(ctx, r.Resources.CloudflareIdentityProviderID) })
	if recount {
		wg.Go(func() { idps, listErr = e.cfg.Access.ListIdentityProviders(ctx) })
	}
	wg.Go(func() { disc, discErr = e.cfg.Endpoints.Discovery(ctx, p.DiscoveryURL) })
	wg.Go(func() { keys, keysErr = e.cfg.Endpoints.JWKS(ctx, p.CertsURL) })
	wg.Go(func() { prov, pErr = e.cfg.Authentik.GetProvider(ctx, r.Resources.AuthentikProviderID) })
	wg.Wait()
	if err := errors.Join(wrapErr("read login method back", idpErr), wrapErr("list login methods", listErr),
		wrapErr("fetch discovery document", discErr), wrapErr("fetch JWKS", keysErr), wrapErr("read provider back", pErr)); err != nil {
		return outcome{}, err
	}
	if recount {
		// A second login method with the run's client secret is a way in
		// that nobody tracks: the run does not succeed while one is there.
		kept := r.Resources.CloudflareIdentityProviderID
		if extras := loginMethodsNamed(idps, p).except(kept); len(extras) > 0 {
			mismatches = append(mismatches, duplicatesProblem(p, kept, extras)+", then retry the run: verify checks again")
		}
	}
	want := PlannedLoginMethod(p)
	got := idp.Config
	cmp := func(what, got, want string) {
		if got != want {
			mismatches = append(mismatches, fmt.Sprintf("%s is %q, want %q", what, got, want))
		}
	}
	cmp("the login method's type", idp.Type, "oidc")
	cmp("the login method's client_id", got.ClientID, want.ClientID)
	cmp("the login method's auth_url", got.AuthURL, want.AuthURL)
	cmp("the login method's token_url", got.TokenURL, want.TokenURL)
	cmp("the login method's certs_url", got.CertsURL, want.CertsURL)
	cmp("the login method's email claim", got.EmailClaimName, want.EmailClaimName)
	for _, s := range want.Scopes {
		if !slices.Contains(got.Scopes, s) {
			mismatches = append(mismatches, fmt.Sprintf("the login method lacks scope %s", s))
		}
	}
	if !got.PKCEEnabled {
		mismatches = append(mismatches, "the login method has PKCE off")
	}

	cmp("the discovery document's authorization_endpoint", disc.AuthorizationEndpoint, p.AuthURL)
	cmp("the discovery document's token_endpoint", disc.TokenEndpoint, p.TokenURL)
	cmp("the discovery document's jwks_uri", disc.JWKSURI, p.CertsURL)
	if !slices.ContainsFunc(keys.Keys, func(k JWK) bool {
		return (k.KTY == "RSA" || k.KTY == "EC") && k.Use != "enc" && !strings.HasPrefix(k.Alg, "HS")
	}) {
		mismatches = append(mismatches, fmt.Sprintf("the JWKS at %s has no RS or ES signing key: set a signing key on the provider", p.CertsURL))
	}

	if !slices.Contains(prov.RedirectURIs, RedirectURI{MatchingMode: "strict", URL: p.CallbackURL}) {
		mismatches = append(mismatches, fmt.Sprintf("the provider's redirect URIs %v do not include %s with strict matching", prov.RedirectURIs, p.CallbackURL))
	}
	if prov.SigningKey == "" {
		mismatches = append(mismatches, "the provider has no signing key")
	}
	// What the provider was created with, checked again: the approval
	// window leaves hours in which an admin or a blueprint may change it.
	for i, id := range p.ScopeMappingIDs {
		if !slices.Contains(prov.PropertyMappings, id) {
			scope := id
			if i < len(RequiredScopes) {
				scope = RequiredScopes[i]
			}
			mismatches = append(mismatches, fmt.Sprintf("the provider lacks the %s scope mapping (without it Cloudflare cannot read the user's identity)", scope))
		}
	}
	if prov.EncryptionKey != "" {
		mismatches = append(mismatches, "the provider has an encryption key: its tokens are encrypted, which Cloudflare cannot read; clear it")
	}
	if !prov.IncludeClaimsInIDToken {
		mismatches = append(mismatches, "the provider does not include claims in the ID token, where Cloudflare reads the email")
	}
	if len(mismatches) > 0 {
		return outcome{}, &APIError{System: "verify", Op: "compare", Permanent: true, Message: strings.Join(mismatches, "; ")}
	}
	dashboard := fmt.Sprintf("https://one.dash.cloudflare.com/%s/settings/authentication", p.AccountID)
	return outcome{
		apply:   func(r *Run) { r.DashboardURL = dashboard },
		message: fmt.Sprintf("verified: Cloudflare's login method matches authentik's discovery document and keys; press Test at %s", dashboard),
		data:    map[string]string{"dashboard_url": dashboard},
	}, nil
}

// opErr adds op to err unless err already names it: an adapter's APIError
// says its operation ("authentik: create application (needs
// add_application): 403 …"), and saying it twice reads as noise.
func opErr(op string, err error) error {
	var api *APIError
	if errors.As(err, &api) && strings.HasPrefix(api.Op, op) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
