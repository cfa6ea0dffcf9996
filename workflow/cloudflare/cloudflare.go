// Package cloudflare implements workflow.Access on Cloudflare Zero Trust
// Access, using only the zero_trust services of cloudflare-go: the root
// client would link every Cloudflare product into the binary.
package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v7/option"
	"github.com/cloudflare/cloudflare-go/v7/zero_trust"

	"github.com/ssobot/ssobot/workflow"
)

// DefaultBaseURL is Cloudflare's API root, used when New gets no base URL.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4/"

// defaultTimeout bounds each HTTP call when the caller gives no client.
const defaultTimeout = 30 * time.Second

// perPage is what the list asks for; the server may answer with fewer.
const perPage = 50

// maxPages stops a server that never runs out of pages.
const maxPages = 1000

// Client is the Cloudflare Access adapter.
type Client struct {
	accountID  string
	token      workflow.Secret
	baseURL    string
	httpClient *http.Client
	idps       *zero_trust.IdentityProviderService
	orgs       *zero_trust.OrganizationService
}

var _ workflow.Access = (*Client)(nil)

// New returns a client for one account. baseURL "" means Cloudflare's
// default; httpClient nil means a client with a 30 s timeout. Redirects
// are not followed: they fail as a *workflow.RedirectError.
func New(accountID string, token workflow.Secret, baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: defaultTimeout}
	}
	// The API never redirects: a redirect is a wrong base URL or something
	// in front of the API, and following it could send the token elsewhere.
	hc := *httpClient
	hc.Transport = workflow.RefuseRedirects(hc.Transport)
	httpClient = &hc
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	if !strings.HasSuffix(baseURL, "/") {
		baseURL += "/"
	}
	opts := []option.RequestOption{
		option.WithAPIToken(token.Reveal()),
		option.WithBaseURL(baseURL),
		option.WithHTTPClient(httpClient),
		// The engine owns retries, with persisted backoff and a reconcile
		// before every new create: SDK retries would duplicate creates and
		// storm a rate-limited token.
		option.WithMaxRetries(0),
	}
	return &Client{
		accountID:  accountID,
		token:      token,
		baseURL:    baseURL,
		httpClient: httpClient,
		idps:       zero_trust.NewIdentityProviderService(opts...),
		orgs:       zero_trust.NewOrganizationService(opts...),
	}
}

// AccountID returns the account the client works on.
func (c *Client) AccountID() string { return c.accountID }

// Organization returns the account's Zero Trust organization.
func (c *Client) Organization(ctx context.Context) (workflow.Organization, error) {
	const op = "get organization"
	var params zero_trust.OrganizationListParams
	params.AccountID.Value, params.AccountID.Present = c.accountID, true
	var x exchange
	org, err := c.orgs.List(ctx, params, x.option())
	if err != nil {
		return workflow.Organization{}, x.error(op, err)
	}
	if org.AuthDomain == "" {
		// Permanent: a person has to set up Zero Trust first.
		return workflow.Organization{}, fmt.Errorf("cloudflare: %s: the account has no Zero Trust organization (no auth_domain)", op)
	}
	return workflow.Organization{Name: org.Name, AuthDomain: org.AuthDomain}, nil
}

// ListIdentityProviders returns every login method of the account, page by
// page. It pages by hand: the SDK's auto-pager ignores ctx after the first
// page and stops only on an empty page.
//
// Pages are read one request each, so a login method added or deleted
// between two of them shifts the others across pages: one may be read
// twice or not at all, and a caller looking for its own must not take it
// for absent. A list seen to change while it is read (total_count differs
// between pages, a page repeats a login method, or the pages run out before
// total_count) is read again from the start, up to listTries times, then
// fails as transient, so that the step tries again later.
func (c *Client) ListIdentityProviders(ctx context.Context) ([]workflow.IdentityProvider, error) {
	const op = "list identity providers"
	for try := 1; ; try++ {
		out, err := c.listOnce(ctx, op)
		if !errors.Is(err, errListChanged) {
			return out, err
		}
		if try == listTries {
			return nil, &workflow.APIError{System: system, Op: op, Err: fmt.Errorf("gave up after %d reads: %w", listTries, err)}
		}
	}
}

// listTries bounds the reads of a list that changes while it is read.
const listTries = 3

// errListChanged: the login methods changed between two pages of a list.
var errListChanged = errors.New("the login methods changed while they were listed")

// listOnce reads the list once, page by page, and fails with errListChanged
// when it sees the list change under it.
func (c *Client) listOnce(ctx context.Context, op string) ([]workflow.IdentityProvider, error) {
	var out []workflow.IdentityProvider
	var prevFirst string
	seen := map[string]bool{}
	total := 0 // total_count of the first page; 0 when not given
	for page := int64(1); ; page++ {
		if page > maxPages {
			return nil, fmt.Errorf("cloudflare: %s: more than %d pages", op, maxPages)
		}
		var params zero_trust.IdentityProviderListParams
		params.AccountID.Value, params.AccountID.Present = c.accountID, true
		params.Page.Value, params.Page.Present = page, true
		params.PerPage.Value, params.PerPage.Present = perPage, true
		var (
			x   exchange
			res idpPage
		)
		if _, err := c.idps.List(ctx, params, x.option(), option.WithResponseBodyInto(&res)); err != nil {
			return nil, x.error(op, err)
		}
		info := resultInfo(string(res.ResultInfo))
		if page == 1 {
			total = info.TotalCount
		} else if total > 0 && info.TotalCount != total {
			return nil, fmt.Errorf("%w (total_count %d on page 1, %d on page %d)", errListChanged, total, info.TotalCount, page)
		}
		// Fewer than total_count read and no more to read: some moved
		// onto pages already read.
		runOut := func() error {
			if total > 0 && len(out) < total {
				return fmt.Errorf("%w (%d of total_count %d read when page %d came back with %d)", errListChanged, len(out), total, page, len(res.Result))
			}
			return nil
		}
		if len(res.Result) == 0 {
			return out, runOut()
		}
		// A server that ignores ?page= would otherwise loop until maxPages.
		if page > 1 && res.Result[0].ID == prevFirst {
			return nil, fmt.Errorf("cloudflare: %s: page %d repeats page %d: the server ignores ?page=", op, page, page-1)
		}
		prevFirst = res.Result[0].ID
		for _, r := range res.Result {
			if seen[r.ID] {
				return nil, fmt.Errorf("%w (%s listed again on page %d)", errListChanged, r.ID, page)
			}
			seen[r.ID] = true
			idp, err := identityProvider(r.ID, r.Name, r.Type, string(r.Config))
			if err != nil {
				// The account's other login methods are not ssobot's: one
				// whose config does not decode (a field of another type) must
				// not fail every list, nor be retried as if the answer were
				// garbled. It is kept and marked, so that one with a run's
				// name is never taken for absent.
				idp.Unreadable = "its config could not be decoded: " + sanitize(err).Error()
			}
			out = append(out, idp)
		}
		switch {
		case total > 0 && len(out) >= total:
			return out, nil
		case info.TotalPages > 0 && page >= int64(info.TotalPages):
			return out, runOut()
		case info.PerPage > 0 && len(res.Result) < info.PerPage:
			// A short page is the last one.
			return out, runOut()
		case total == 0 && info.TotalPages == 0 && len(res.Result) < effectivePerPage(info):
			// Without totals a short page is the last one.
			return out, nil
		}
	}
}

// GetIdentityProvider reads one login method; a missing one gives an error
// wrapping workflow.ErrNotFound.
func (c *Client) GetIdentityProvider(ctx context.Context, id string) (workflow.IdentityProvider, error) {
	const op = "get identity provider"
	if id == "" {
		return workflow.IdentityProvider{}, fmt.Errorf("cloudflare: %s: empty id", op)
	}
	var params zero_trust.IdentityProviderGetParams
	params.AccountID.Value, params.AccountID.Present = c.accountID, true
	var x exchange
	res, err := c.idps.Get(ctx, id, params, x.option())
	if err != nil {
		return workflow.IdentityProvider{}, x.error(op, err)
	}
	idp, err := identityProvider(res.ID, res.Name, string(res.Type), res.JSON.Config.Raw())
	if err != nil {
		return workflow.IdentityProvider{}, malformed(op, x.status, err)
	}
	return idp, nil
}

// CreateIdentityProvider creates an OIDC login method with exactly one
// request. The client secret is revealed only into the request body, and
// errors are built from status, codes and messages, never from the request.
func (c *Client) CreateIdentityProvider(ctx context.Context, spec workflow.IdentityProviderSpec) (workflow.IdentityProvider, error) {
	const op = "create identity provider"
	var body zero_trust.IdentityProviderAccessOIDCParam
	body.Name.Value, body.Name.Present = spec.Name, true
	body.Type.Value, body.Type.Present = zero_trust.IdentityProviderTypeOIDC, true
	var cfg zero_trust.IdentityProviderAccessOIDCConfigParam
	cfg.ClientID.Value, cfg.ClientID.Present = spec.Config.ClientID, true
	cfg.ClientSecret.Value, cfg.ClientSecret.Present = spec.ClientSecret.Reveal(), true
	cfg.AuthURL.Value, cfg.AuthURL.Present = spec.Config.AuthURL, true
	cfg.TokenURL.Value, cfg.TokenURL.Present = spec.Config.TokenURL, true
	cfg.CERTsURL.Value, cfg.CERTsURL.Present = spec.Config.CertsURL, true
	// Empty slices, not nil: nil would be sent as null.
	cfg.Scopes.Value, cfg.Scopes.Present = nonNil(spec.Config.Scopes), true
	cfg.PKCEEnabled.Value, cfg.PKCEEnabled.Present = spec.Config.PKCEEnabled, true
	if spec.Config.EmailClaimName != "" {
		cfg.EmailClaimName.Value, cfg.EmailClaimName.Present = spec.Config.EmailClaimName, true
	}
	cfg.Claims.Value, cfg.Claims.Present = nonNil(spec.Config.Claims), true
	body.Config.Value, body.Config.Present = cfg, true

	var params zero_trust.IdentityProviderNewParams
	params.AccountID.Value, params.AccountID.Present = c.accountID, true
	params.IdentityProvider = body

	x := exchange{secret: spec.ClientSecret.Reveal()}
	res, err := c.idps.New(ctx, params, x.option())
	if err != nil {
		return workflow.IdentityProvider{}, x.error(op, err)
	}
	idp, err := identityProvider(res.ID, res.Name, string(res.Type), res.JSON.Config.Raw())
	if err != nil {
		return workflow.IdentityProvider{}, malformed(op, x.status, err)
	}
	if idp.ID == "" {
		return workflow.IdentityProvider{}, malformed(op, x.status, errors.New("no id in the result"))
	}
	return idp, nil
}

// oidcConfig is the readable part of an OIDC login method's config.
type oidcConfig struct {
	ClientID       string   `json:"client_id"`
	AuthURL        string   `json:"auth_url"`
	TokenURL       string   `json:"token_url"`
	CertsURL       string   `json:"certs_url"`
	Scopes         []string `json:"scopes"`
	PKCEEnabled    bool     `json:"pkce_enabled"`
	EmailClaimName string   `json:"email_claim_name"`
	Claims         []string `json:"claims"`
}

// identityProvider converts a login method, decoding the config from its raw
// JSON: the SDK's union has no discriminator and decodes an oidc config as
// AzureAD, so neither AsUnion nor a type switch can be trusted.
func identityProvider(id, name, typ, rawConfig string) (workflow.IdentityProvider, error) {
	idp := workflow.IdentityProvider{ID: id, Name: name, Type: typ}
	if typ != string(zero_trust.IdentityProviderTypeOIDC) || rawConfig == "" || rawConfig == "null" {
		return idp, nil
	}
	var cfg oidcConfig
	if err := json.Unmarshal([]byte(rawConfig), &cfg); err != nil {
		return idp, fmt.Errorf("decode config of %q: %w", name, err)
	}
	idp.Config = workflow.OIDCConfig(cfg)
	return idp, nil
}

// idpPage is a page of the identity provider list, decoded with
// encoding/json into the fields ssobot reads. The SDK's own decoding of the
// list (a union of 15 config types per login method, by reflection) was a
// fifth of a whole run's CPU, and it grows with every login method the
// account holds, listed twice a run.
type idpPage struct {
	Result []struct {
		ID     string          `json:"id"`
		Name   string          `json:"name"`
		Type   string          `json:"type"`
		Config json.RawMessage `json:"config"`
	} `json:"result"`
	ResultInfo json.RawMessage `json:"result_info"`
}

// listInfo is result_info; the SDK keeps only page and per_page.
type listInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

func resultInfo(raw string) listInfo {
	var info listInfo
	if raw != "" {
		// Paging hints only: a bad result_info falls back to short-page detection.
		_ = json.Unmarshal([]byte(raw), &info)
	}
	return info
}

func effectivePerPage(info listInfo) int {
	if info.PerPage > 0 {
		return info.PerPage
	}
	return perPage
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
