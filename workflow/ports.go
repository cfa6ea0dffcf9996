package workflow

import (
	"context"
	"time"
)

// Store keeps runs and their audit events durably. Implementations must pass
// the conformance suite in workflow/workflowtest.
type Store interface {
	// CreateRun assigns r.ID (increasing, never reused), sets r.Version to 1 and
	// writes the run with its events (their RunID and Seq are assigned). It
	// keeps no reference to r or to the events once it returns.
	CreateRun(ctx context.Context, r *Run, events ...Event) error
	// GetRun returns a copy of the run, or an error wrapping ErrNotFound.
	GetRun(ctx context.Context, id int64) (*Run, error)
	// UpdateRun is the compare-and-set of the engine: in one write
	// transaction it loads the run, calls fn on it, and when fn returns nil it
	// bumps Version and writes the run and fn's events. When fn returns an
	// error nothing is written and that error is returned. fn must be quick
	// and must not do I/O: it may be called while other writers wait.
	UpdateRun(ctx context.Context, id int64, fn func(r *Run) ([]Event, error)) (*Run, error)
	// AppendEvents adds events to a run's log without changing the run
	// (used for refused attempts, which change nothing else).
	AppendEvents(ctx context.Context, id int64, events ...Event) error
	// ListRuns returns runs newest first.
	ListRuns(ctx context.Context, opts ListOptions) ([]*Run, error)
	// Events returns a run's events oldest first.
	Events(ctx context.Context, id int64) ([]Event, error)
}

// ListOptions filters ListRuns.
type ListOptions struct {
	Limit  int     // 0: no limit
	States []State // empty: every state
	// BeforeID pages backwards: only runs with ID < BeforeID (0: from the newest).
	BeforeID int64
	// RunningStep keeps only runs with a step in status running. With the
	// terminal States it finds the runs a stopped process left with a call
	// in flight: a cancel leaves a running step to its call's result.
	RunningStep bool
}

// Notifier is told about every change of a run, after it is stored. It must
// not block the engine: slow delivery (Slack) belongs behind a queue.
type Notifier interface {
	RunChanged(ctx context.Context, run *Run, events []Event)
}

// Approvers answers whether a user may decide gates, cancel and retry.
type Approvers interface {
	// Eligible returns false with a reason a person can read when not.
	Eligible(ctx context.Context, user string) (ok bool, reason string, err error)
}

// Clock is injected so that deadlines and backoff are tested without sleeping.
type Clock interface {
	Now() time.Time
	// After waits for the duration to pass (on this clock).
	After(d time.Duration) <-chan time.Time
}

// Observer receives measurements; the binary turns them into metrics.
type Observer interface {
	StepFinished(step StepName, d time.Duration, err error)
	DecisionMade(gate StepName, d Decision, accepted bool)
	RunFinished(state State)
}

// Authentik is what the engine needs of authentik's API.
// Lookups that find nothing return an error wrapping ErrNotFound.
type Authentik interface {
	Me(ctx context.Context) (User, error)
	FlowBySlug(ctx context.Context, designation, slug string) (Flow, error)
	CertificateByName(ctx context.Context, name string) (Certificate, error)
	// ScopeMappings returns the scope mappings with the given managed IDs
	// (those it finds; the caller checks for missing ones).
	ScopeMappings(ctx context.Context, managed []string) ([]ScopeMapping, error)
	ProviderByClientID(ctx context.Context, clientID string) (Provider, error)
	ProviderByName(ctx context.Context, name string) (Provider, error)
	GetProvider(ctx context.Context, id int) (Provider, error)
	CreateProvider(ctx context.Context, spec ProviderSpec) (Provider, error)
	// ClientSecret reads the provider's client secret at the moment it is needed.
	ClientSecret(ctx context.Context, providerID int) (Secret, error)
	// ApplicationBySlug gets the application by slug (not the list endpoint,
	// which hides applications the token's user cannot launch).
	ApplicationBySlug(ctx context.Context, slug string) (Application, error)
	CreateApplication(ctx context.Context, spec ApplicationSpec) (Application, error)
}

// User is the identity behind the authentik token.
type User struct {
	PK       int
	Username string
}

// Flow is an authentik flow.
type Flow struct {
	PK          string // UUID
	Slug        string
	Name        string
	Designation string
}

// Certificate is an authentik certificate-key pair.
type Certificate struct {
	PK     string // UUID
	Name   string
	HasKey bool // a pair without a private key cannot sign tokens
}

// ScopeMapping is an authentik OAuth2 scope mapping.
type ScopeMapping struct {
	PK        string // UUID
	Managed   string
	ScopeName string
	Name      string
}

// Managed IDs of the scope mappings every provider for Cloudflare needs.
const (
	ScopeOpenID  = "goauthentik.io/providers/oauth2/scope-openid"
	ScopeEmail   = "goauthentik.io/providers/oauth2/scope-email"
	ScopeProfile = "goauthentik.io/providers/oauth2/scope-profile"
)

// RequiredScopes lists the managed scope mappings, in order.
var RequiredScopes = []string{ScopeOpenID, ScopeEmail, ScopeProfile}

// RedirectURI is one redirect URI of a provider.
type RedirectURI struct {
	MatchingMode string // "strict" or "regex"
	URL          string
}

// ProviderSpec is what the engine asks authentik to create.
type ProviderSpec struct {
	Name                   string
	ClientID               string
	ClientType             string // "confidential"
	AuthorizationFlow      string // flow PK
	InvalidationFlow       string // flow PK
	RedirectURIs           []RedirectURI
	SigningKey             string   // certificate PK
	PropertyMappings       []string // scope mapping PKs
	IncludeClaimsInIDToken bool
}

// Provider is an authentik OAuth2/OpenID provider, without its secret.
type Provider struct {
	PK                     int
	Name                   string
	ClientID               string
	ClientType             string
	AuthorizationFlow      string
	InvalidationFlow       string
	RedirectURIs           []RedirectURI
	SigningKey             string // "" when null: tokens would be HS256
	EncryptionKey          string // "" when null
	PropertyMappings       []string
	IncludeClaimsInIDToken bool
	// AssignedApplicationSlug is "" until an application uses the provider.
	AssignedApplicationSlug string
}

// ApplicationSpec is what the engine asks authentik to create.
type ApplicationSpec struct {
	Name             string
	Slug             string
	Provider         int
	PolicyEngineMode string // "any"
}

// Application is an authentik application.
type Application struct {
	PK               string
	Name             string
	Slug             string
	Provider         int // 0 when none
	PolicyEngineMode string
}

// Access is what the engine needs of Cloudflare Zero Trust Access.
type Access interface {
	AccountID() string
	Organization(ctx context.Context) (Organization, error)
	// ListIdentityProviders returns every login method of the account (all
	// pages), those whose config cannot be read marked Unreadable rather
	// than failing the list. A list seen to change while its pages are
	// read is read again, or fails as transient.
	ListIdentityProviders(ctx context.Context) ([]IdentityProvider, error)
	GetIdentityProvider(ctx context.Context, id string) (IdentityProvider, error)
	// CreateIdentityProvider makes exactly one request (no SDK retries):
	// the engine reconciles by listing before it tries again.
	CreateIdentityProvider(ctx context.Context, spec IdentityProviderSpec) (IdentityProvider, error)
}

// Organization is the account's Zero Trust organization.
type Organization struct {
	Name       string
	AuthDomain string // e.g. company.cloudflareaccess.com
}

// OIDCConfig is the non-secret part of an OIDC login method.
type OIDCConfig struct {
	ClientID       string
	AuthURL        string
	TokenURL       string
	CertsURL       string
	Scopes         []string
	PKCEEnabled    bool
	EmailClaimName string
	Claims         []string
}

// IdentityProvider is a Cloudflare Access login method. Config is decoded
// only for type "oidc".
type IdentityProvider struct {
	ID     string
	Name   string
	Type   string
	Config OIDCConfig
	// Unreadable says why Config could not be read, for a login method
	// listed with a config the adapter cannot decode (Config is then
	// empty); "" otherwise. Such a login method may still be a run's own.
	Unreadable string
}

// IdentityProviderSpec is an OIDC login method to create.
type IdentityProviderSpec struct {
	Name         string
	Config       OIDCConfig
	ClientSecret Secret
}

// Endpoints checks authentik's public URLs the way Cloudflare will use them:
// over HTTPS with certificates the system trusts.
type Endpoints interface {
	// CheckTLS fetches the URL and fails unless TLS verifies against the system roots.
	CheckTLS(ctx context.Context, url string) error
	Discovery(ctx context.Context, url string) (Discovery, error)
	JWKS(ctx context.Context, url string) (JWKS, error)
}

// Discovery is the part of an OpenID discovery document the engine checks.
type Discovery struct {
	Issuer                string
	AuthorizationEndpoint string
	TokenEndpoint         string
	JWKSURI               string
	SigningAlgs           []string
}

// JWKS is the part of a JSON Web Key Set the engine checks.
type JWKS struct {
	Keys []JWK
}

// JWK is one key of a JWKS.
type JWK struct {
	KID string
	KTY string // RSA, EC, oct
	Alg string
	Use string
}
