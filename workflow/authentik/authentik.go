// Package authentik implements workflow.Authentik on authentik's REST API
// through the generated client goauthentik.io/api/v3.
//
// Requests are built and sent by the generated client. Responses are decoded
// by this package into the few fields the engine needs, because the
// generated models reject a body when a field they mark required is missing
// or renamed, which happens across authentik releases.
//
// Every failure is a *workflow.APIError: transport errors, timeouts and
// malformed bodies have Status 0 (transient), HTTP errors keep their status
// and authentik's own message. On a 403 the Op names the permission the
// call needs, e.g. "list flows (needs view_flow)".
package authentik

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	api "goauthentik.io/api/v3"

	"github.com/ssobot/ssobot/workflow"
)

// DefaultTimeout bounds each call when New is given no HTTP client.
const DefaultTimeout = 30 * time.Second

// pageSize is the page size of list calls; authentik caps it at 100.
const pageSize = 100

// maxPages stops a list that never ends (a server ignoring ?page=).
const maxPages = 100

// ErrNoSigningKey: authentik created a provider without a signing key.
// Its tokens would be signed HS256 with the client secret, and Cloudflare
// Access only accepts asymmetric signatures.
var ErrNoSigningKey = errors.New("provider has no signing key: tokens would be signed HS256 and Cloudflare Access rejects them")

// RequiredPermissions are the global permissions the bot's token needs.
var RequiredPermissions = []string{
	"view_flow",
	"view_certificatekeypair",
	"view_scopemapping",
	"view_oauth2provider", "add_oauth2provider",
	"view_application", "add_application",
}

var slugRE = regexp.MustCompile(`^[-a-zA-Z0-9_]+$`)

// Client talks to one authentik instance. It is safe for concurrent use.
type Client struct {
	api     *api.APIClient
	baseURL string
}

var _ workflow.Authentik = (*Client)(nil)

// New returns a client for the authentik at baseURL (https://auth.example.com,
// without /api/v3). The token is sent as a bearer token on every request and
// nowhere else. httpClient may be nil; its Timeout bounds each call.
func New(baseURL string, token workflow.Secret, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("authentik url: %w", err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("authentik url %q: must be an absolute https:// URL: %w", baseURL, workflow.ErrInvalidRequest)
	case u.Host == "":
		return nil, fmt.Errorf("authentik url %q: no host: %w", baseURL, workflow.ErrInvalidRequest)
	case u.User != nil, u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("authentik url: must not hold credentials, a query or a fragment: %w", workflow.ErrInvalidRequest)
	}
	base := strings.TrimRight(u.String(), "/")
	if strings.HasSuffix(base, "/api/v3") {
		return nil, fmt.Errorf("authentik url %q: give the instance URL without /api/v3: %w", baseURL, workflow.ErrInvalidRequest)
	}
	if token.IsZero() {
		return nil, fmt.Errorf("authentik token: empty: %w", workflow.ErrInvalidRequest)
	}

	var hc http.Client
	if httpClient != nil {
		hc = *httpClient
	} else {
		hc.Timeout = DefaultTimeout
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	// The token lives in the transport, not in the generated client's
	// configuration or the context, so no dump or log of either can hold it.
	hc.Transport = undecoded{&bearer{base: rt, token: token}}
	// The transport adds the token to every request it sends, so a
	// redirect followed to another host (an auth proxy's login page in
	// front of the API) would carry it there. No API call of ssobot's is
	// redirected by authentik itself: the redirect comes back as an error.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	cfg := api.NewConfiguration()
	cfg.Servers = api.ServerConfigurations{{URL: base + "/api/v3"}}
	cfg.HTTPClient = &hc
	cfg.UserAgent = "ssobot"
	return &Client{api: api.NewAPIClient(cfg), baseURL: base}, nil
}

// BaseURL is the instance URL the client was made for.
func (c *Client) BaseURL() string { return c.baseURL }

type bearer struct {
	base  http.RoundTripper
	token workflow.Secret
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token.Reveal())
	return b.base.RoundTrip(r)
}

// undecoded hands the generated client the body of a successful answer
// without its media type, so that the client does not decode it into its
// models: ssobot never reads them (decode reads the fields it uses into its
// own types, as the models refuse bodies of other authentik releases), and
// that decoding, with the client's own checks of required fields, was 12 %
// of the CPU in a profile of concurrent runs. The client then returns the
// body with an "undefined response type" error, which decode expects. An
// error answer keeps its media type.
type undecoded struct{ base http.RoundTripper }

func (u undecoded) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := u.base.RoundTrip(r)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		resp.Header.Del("Content-Type")
	}
	return resp, err
}

// Me returns the user behind the token: the cheapest call that proves the
// token works.
func (c *Client) Me(ctx context.Context) (workflow.User, error) {
	const op = "get current user"
	_, resp, err := c.api.CoreAPI.CoreUsersMeRetrieve(ctx).Execute()
	var out struct {
		User struct {
			PK       int    `json:"pk"`
			Username string `json:"username"`
		} `json:"user"`
	}
	if err := decode(op, "", resp, err, &out); err != nil {
		return workflow.User{}, err
	}
	return workflow.User{PK: out.User.PK, Username: out.User.Username}, nil
}

// FlowBySlug finds a flow by designation and slug.
func (c *Client) FlowBySlug(ctx context.Context, designation, slug string) (workflow.Flow, error) {
	const op = "list flows"
	d, err := api.NewFlowDesignationEnumFromValue(designation)
	if err != nil {
		return workflow.Flow{}, fmt.Errorf("%s: designation %q: %w", op, designation, workflow.ErrInvalidRequest)
	}
	flows, err := listAll[wireFlow](op, "view_flow", func(page int32) (*http.Response, error) {
		_, resp, err := c.api.FlowsAPI.FlowsInstancesList(ctx).Designation(*d).Slug(slug).Page(page).PageSize(pageSize).Execute()
		return resp, err
	})
	if err != nil {
		return workflow.Flow{}, err
	}
	// Check the filters held: a server that ignored them would hand back
	// some other flow.
	for _, f := range flows {
		if f.Slug == slug && f.Designation == designation {
			return workflow.Flow{PK: f.PK, Slug: f.Slug, Name: f.Name, Designation: f.Designation}, nil
		}
	}
	return workflow.Flow{}, fmt.Errorf("authentik: no %s flow with slug %q: %w", designation, slug, workflow.ErrNotFound)
}

// CertificateByName finds a certificate-key pair by its exact name.
func (c *Client) CertificateByName(ctx context.Context, name string) (workflow.Certificate, error) {
	const op = "list certificates"
	certs, err := listAll[wireCertificate](op, "view_certificatekeypair", func(page int32) (*http.Response, error) {
		_, resp, err := c.api.CryptoAPI.CryptoCertificatekeypairsList(ctx).Name(name).Page(page).PageSize(pageSize).Execute()
		return resp, err
	})
	if err != nil {
		return workflow.Certificate{}, err
	}
	for _, k := range certs {
		if k.Name == name {
			return workflow.Certificate{PK: k.PK, Name: k.Name, HasKey: k.PrivateKeyAvailable}, nil
		}
	}
	return workflow.Certificate{}, fmt.Errorf("authentik: no certificate-key pair named %q: %w", name, workflow.ErrNotFound)
}

// ScopeMappings returns the scope mappings with the given managed IDs that
// exist; the caller checks for missing ones.
func (c *Client) ScopeMappings(ctx context.Context, managed []string) ([]workflow.ScopeMapping, error) {
	const op = "list scope mappings"
	if len(managed) == 0 {
		return []workflow.ScopeMapping{}, nil
	}
	maps, err := listAll[wireScopeMapping](op, "view_scopemapping", func(page int32) (*http.Response, error) {
		_, resp, err := c.api.PropertymappingsAPI.PropertymappingsProviderScopeList(ctx).Managed(managed).Page(page).PageSize(pageSize).Execute()
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(managed))
	for _, m := range managed {
		want[m] = true
	}
	out := make([]workflow.ScopeMapping, 0, len(managed))
	for _, m := range maps {
		if m.Managed == nil || !want[*m.Managed] {
			continue
		}
		out = append(out, workflow.ScopeMapping{PK: m.PK, Managed: *m.Managed, ScopeName: m.ScopeName, Name: m.Name})
	}
	return out, nil
}

// ProviderByClientID finds an OAuth2 provider by client ID.
func (c *Client) ProviderByClientID(ctx context.Context, clientID string) (workflow.Provider, error) {
	const op = "list providers"
	ps, err := listAll[wireProvider](op, "view_oauth2provider", func(page int32) (*http.Response, error) {
		_, resp, err := c.api.ProvidersAPI.ProvidersOauth2List(ctx).ClientId(clientID).Page(page).PageSize(pageSize).Execute()
		return resp, err
	})
	if err != nil {
		return workflow.Provider{}, err
	}
	for _, p := range ps {
		if p.ClientID == clientID {
			return p.provider(), nil
		}
	}
	return workflow.Provider{}, fmt.Errorf("authentik: no OAuth2 provider with client ID %q: %w", clientID, workflow.ErrNotFound)
}

// ProviderByName finds an OAuth2 provider by name.
func (c *Client) ProviderByName(ctx context.Context, name string) (workflow.Provider, error) {
	const op = "list providers"
	ps, err := listAll[wireProvider](op, "view_oauth2provider", func(page int32) (*http.Response, error) {
		_, resp, err := c.api.ProvidersAPI.ProvidersOauth2List(ctx).Name(name).Page(page).PageSize(pageSize).Execute()
		return resp, err
	})
	if err != nil {
		return workflow.Provider{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p.provider(), nil
		}
	}
	return workflow.Provider{}, fmt.Errorf("authentik: no OAuth2 provider named %q: %w", name, workflow.ErrNotFound)
}

// GetProvider gets an OAuth2 provider by primary key.
func (c *Client) GetProvider(ctx context.Context, id int) (workflow.Provider, error) {
	const op = "get provider"
	pk, err := providerPK(op, id)
	if err != nil {
		return workflow.Provider{}, err
	}
	_, resp, err := c.api.ProvidersAPI.ProvidersOauth2Retrieve(ctx, pk).Execute()
	var p wireProvider
	if err := decode(op, "view_oauth2provider", resp, err, &p); err != nil {
		return workflow.Provider{}, err
	}
	return p.provider(), nil
}

// CreateProvider creates a confidential OAuth2/OpenID provider. authentik
// generates the client secret. When authentik answers with a provider
// without a signing key, the provider is returned with an error wrapping
// ErrNoSigningKey.
func (c *Client) CreateProvider(ctx context.Context, spec workflow.ProviderSpec) (workflow.Provider, error) {
	const op = "create provider"
	if spec.SigningKey == "" {
		return workflow.Provider{}, fmt.Errorf("%s: %w: %w", op, ErrNoSigningKey, workflow.ErrInvalidRequest)
	}
	redirects := make([]api.RedirectURIRequest, 0, len(spec.RedirectURIs))
	for _, r := range spec.RedirectURIs {
		mode, err := api.NewMatchingModeEnumFromValue(r.MatchingMode)
		if err != nil {
			return workflow.Provider{}, fmt.Errorf("%s: redirect URI matching mode %q: %w", op, r.MatchingMode, workflow.ErrInvalidRequest)
		}
		redirects = append(redirects, *api.NewRedirectURIRequest(*mode, r.URL))
	}
	clientType := spec.ClientType
	if clientType == "" {
		clientType = string(api.CLIENTTYPEENUM_CONFIDENTIAL)
	}
	ct, err := api.NewClientTypeEnumFromValue(clientType)
	if err != nil {
		return workflow.Provider{}, fmt.Errorf("%s: client type %q: %w", op, clientType, workflow.ErrInvalidRequest)
	}

	req := api.NewOAuth2ProviderRequest(spec.Name, spec.AuthorizationFlow, spec.InvalidationFlow, redirects)
	req.SetClientType(*ct)
	if spec.ClientID != "" {
		req.SetClientId(spec.ClientID)
	}
	req.SetSigningKey(spec.SigningKey)
	// An encryption key would turn tokens into JWEs Cloudflare cannot read.
	req.SetEncryptionKeyNil()
	// A nil slice would be sent as JSON null, which authentik refuses.
	mappings := make([]string, 0, len(spec.PropertyMappings))
	req.SetPropertyMappings(append(mappings, spec.PropertyMappings...))
	req.SetIncludeClaimsInIdToken(spec.IncludeClaimsInIDToken)

	_, resp, err := c.api.ProvidersAPI.ProvidersOauth2Create(ctx).OAuth2ProviderRequest(*req).Execute()
	var p wireProvider
	if err := decode(op, "add_oauth2provider", resp, err, &p); err != nil {
		return workflow.Provider{}, err
	}
	if p.PK <= 0 {
		return workflow.Provider{}, malformed(op, resp.StatusCode, errors.New("no provider pk"))
	}
	out := p.provider()
	if out.SigningKey == "" {
		return out, fmt.Errorf("%s: authentik created provider %d (%s): %w", op, out.PK, out.Name, ErrNoSigningKey)
	}
	return out, nil
}

// ClientSecret reads the provider's client secret.
func (c *Client) ClientSecret(ctx context.Context, providerID int) (workflow.Secret, error) {
	const op = "get provider secret"
	pk, err := providerPK(op, providerID)
	if err != nil {
		return workflow.Secret{}, err
	}
	_, resp, err := c.api.ProvidersAPI.ProvidersOauth2Retrieve(ctx, pk).Execute()
	var out struct {
		ClientSecret string `json:"client_secret"`
	}
	if err := decode(op, "view_oauth2provider", resp, err, &out); err != nil {
		return workflow.Secret{}, err
	}
	if out.ClientSecret == "" {
		return workflow.Secret{}, fmt.Errorf("%s: provider %d has no client secret (is it a public client?)", op, providerID)
	}
	return workflow.NewSecret(out.ClientSecret), nil
}

// ApplicationBySlug gets an application by slug. It uses the detail
// endpoint, because the list hides applications the token's user cannot launch.
func (c *Client) ApplicationBySlug(ctx context.Context, slug string) (workflow.Application, error) {
	const op = "get application"
	if !slugRE.MatchString(slug) {
		return workflow.Application{}, fmt.Errorf("%s: slug %q: %w", op, slug, workflow.ErrInvalidRequest)
	}
	_, resp, err := c.api.CoreAPI.CoreApplicationsRetrieve(ctx, slug).Execute()
	var a wireApplication
	if err := decode(op, "view_application", resp, err, &a); err != nil {
		return workflow.Application{}, err
	}
	return a.application(), nil
}

// CreateApplication creates an application bound to a provider.
func (c *Client) CreateApplication(ctx context.Context, spec workflow.ApplicationSpec) (workflow.Application, error) {
	const op = "create application"
	if !slugRE.MatchString(spec.Slug) {
		return workflow.Application{}, fmt.Errorf("%s: slug %q: %w", op, spec.Slug, workflow.ErrInvalidRequest)
	}
	mode := spec.PolicyEngineMode
	if mode == "" {
		mode = string(api.POLICYENGINEMODE_ANY)
	}
	pem, err := api.NewPolicyEngineModeFromValue(mode)
	if err != nil {
		return workflow.Application{}, fmt.Errorf("%s: policy engine mode %q: %w", op, mode, workflow.ErrInvalidRequest)
	}
	pk, err := providerPK(op, spec.Provider)
	if err != nil {
		return workflow.Application{}, err
	}
	req := api.NewApplicationRequest(spec.Name, spec.Slug)
	req.SetProvider(pk)
	req.SetPolicyEngineMode(*pem)
	_, resp, err := c.api.CoreAPI.CoreApplicationsCreate(ctx).ApplicationRequest(*req).Execute()
	var a wireApplication
	if err := decode(op, "add_application", resp, err, &a); err != nil {
		return workflow.Application{}, err
	}
	if a.Slug == "" {
		return workflow.Application{}, malformed(op, resp.StatusCode, errors.New("no application slug"))
	}
	return a.application(), nil
}

func providerPK(op string, id int) (int32, error) {
	if id <= 0 || id > math.MaxInt32 {
		return 0, fmt.Errorf("%s: provider id %d: %w", op, id, workflow.ErrInvalidRequest)
	}
	return int32(id), nil
}
