package authentiktest

import (
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RedirectURI is one redirect URI of a provider.
type RedirectURI struct {
	MatchingMode string
	URL          string
}

// Provider is an OAuth2 provider held by the fake, secret included so that
// tests can search logs and stores for it.
type Provider struct {
	PK                     int
	Name                   string
	ClientID               string
	ClientSecret           string
	ClientType             string
	AuthorizationFlow      string
	InvalidationFlow       string
	RedirectURIs           []RedirectURI
	SigningKey             string // "" when null
	EncryptionKey          string // "" when null
	PropertyMappings       []string
	IncludeClaimsInIDToken bool
}

// Application is an application held by the fake.
type Application struct {
	PK               string
	Name             string
	Slug             string
	Provider         int // 0 when none
	PolicyEngineMode string
}

type flow struct {
	pk, slug, name, title, designation string
}

type cert struct {
	pk, name string
	key      *rsa.PrivateKey // nil: a certificate without its private key
	created  time.Time
}

type scopeMapping struct {
	pk, managed, name, scopeName string
}

type state struct {
	flows     []*flow
	certs     []*cert
	scopes    []*scopeMapping
	providers []*Provider
	apps      []*Application
	nextPK    int
}

// Names and IDs of the seeded objects.
const (
	FlowExplicitConsent = "default-provider-authorization-explicit-consent"
	FlowImplicitConsent = "default-provider-authorization-implicit-consent"
	FlowInvalidation    = "default-provider-invalidation-flow"
	SelfSignedCert      = "authentik Self-signed Certificate"
	AdminUsername       = "akadmin"
	adminPK             = 4
)

// reservedSlugs cannot name applications: they collide with OAuth2 endpoints.
var reservedSlugs = []string{"authorize", "token", "device", "userinfo", "introspect", "revoke"}

func (s *Server) seed() {
	for _, f := range []struct{ slug, name, title, designation string }{
		{"default-authentication-flow", "Welcome to authentik!", "Welcome to authentik!", "authentication"},
		{FlowExplicitConsent, "Authorize Application", "Redirecting to %(app)s", "authorization"},
		{FlowImplicitConsent, "Authorize Application", "Redirecting to %(app)s", "authorization"},
		{"default-invalidation-flow", "Logout", "Default Invalidation Flow", "invalidation"},
		{FlowInvalidation, "Logged out of application", "You've logged out of %(app)s.", "invalidation"},
	} {
		s.flows = append(s.flows, &flow{pk: s.uuid(), slug: f.slug, name: f.name, title: f.title, designation: f.designation})
	}
	s.certs = append(s.certs, &cert{pk: s.uuid(), name: SelfSignedCert, key: sharedKey(), created: time.Now().UTC()})
	for _, m := range []struct{ scope, name string }{
		{"openid", "authentik default OAuth Mapping: OpenID 'openid'"},
		{"email", "authentik default OAuth Mapping: OpenID 'email'"},
		{"profile", "authentik default OAuth Mapping: OpenID 'profile'"},
		{"offline_access", "authentik default OAuth Mapping: OpenID 'offline_access'"},
		{"entitlements", "authentik default OAuth Mapping: Application Entitlements"},
	} {
		s.scopes = append(s.scopes, &scopeMapping{pk: s.uuid(), managed: "goauthentik.io/providers/oauth2/scope-" + m.scope, name: m.name, scopeName: m.scope})
	}
	s.nextPK = 1
}

// Providers returns copies of the providers, oldest first.
func (s *Server) Providers() []Provider {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Provider, 0, len(s.providers))
	for _, p := range s.providers {
		c := *p
		c.RedirectURIs = slices.Clone(p.RedirectURIs)
		c.PropertyMappings = slices.Clone(p.PropertyMappings)
		out = append(out, c)
	}
	return out
}

// EditProvider changes the stored provider with this PK in place, as an
// admin or a blueprint might between the bot's calls (to test that drift is
// caught). edit runs with the server's lock held and must not call the
// Server. It reports whether the provider exists.
func (s *Server) EditProvider(pk int, edit func(*Provider)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.providerByPK(pk)
	if p == nil {
		return false
	}
	edit(p)
	return true
}

// Applications returns copies of the applications, oldest first.
func (s *Server) Applications() []Application {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Application, 0, len(s.apps))
	for _, a := range s.apps {
		out = append(out, *a)
	}
	return out
}

// FlowPK returns the UUID of the flow with this slug, or "".
func (s *Server) FlowPK(slug string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.flows {
		if f.slug == slug {
			return f.pk
		}
	}
	return ""
}

// CertificatePK returns the UUID of the certificate with this name, or "".
func (s *Server) CertificatePK(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.certByName(name); c != nil {
		return c.pk
	}
	return ""
}

// ScopeMappingPK returns the UUID of the scope mapping with this managed ID, or "".
func (s *Server) ScopeMappingPK(managed string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.scopes {
		if m.managed == managed {
			return m.pk
		}
	}
	return ""
}

// AddCertificate adds a certificate-key pair; withKey false models an
// imported certificate without its private key, which cannot sign.
func (s *Server) AddCertificate(name string, withKey bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &cert{pk: s.uuid(), name: name, created: time.Now().UTC()}
	if withKey {
		c.key = sharedKey()
	}
	s.certs = append(s.certs, c)
	return c.pk
}

// DeleteCertificate deletes the certificate-key pair with this name.
// Providers signing with it lose their signing key, as in authentik.
func (s *Server) DeleteCertificate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.certByName(name)
	if c == nil {
		return
	}
	s.certs = slices.DeleteFunc(s.certs, func(x *cert) bool { return x == c })
	for _, p := range s.providers {
		if p.SigningKey == c.pk {
			p.SigningKey = ""
		}
		if p.EncryptionKey == c.pk {
			p.EncryptionKey = ""
		}
	}
}

// DeleteFlow deletes the flow with this slug.
func (s *Server) DeleteFlow(slug string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flows = slices.DeleteFunc(s.flows, func(f *flow) bool { return f.slug == slug })
}

// DeleteScopeMapping deletes the scope mapping with this managed ID.
func (s *Server) DeleteScopeMapping(managed string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone string
	s.scopes = slices.DeleteFunc(s.scopes, func(m *scopeMapping) bool {
		if m.managed == managed {
			gone = m.pk
			return true
		}
		return false
	})
	for _, p := range s.providers {
		p.PropertyMappings = slices.DeleteFunc(p.PropertyMappings, func(pk string) bool { return pk == gone })
	}
}

func (s *Server) certByName(name string) *cert {
	for _, c := range s.certs {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (s *Server) certByPK(pk string) *cert {
	for _, c := range s.certs {
		if c.pk == pk {
			return c
		}
	}
	return nil
}

func (s *Server) providerByPK(pk int) *Provider {
	for _, p := range s.providers {
		if p.PK == pk {
			return p
		}
	}
	return nil
}

func (s *Server) appBySlug(slug string) *Application {
	for _, a := range s.apps {
		if a.Slug == slug {
			return a
		}
	}
	return nil
}

func (s *Server) appForProvider(pk int) *Application {
	for _, a := range s.apps {
		if a.Provider == pk {
			return a
		}
	}
	return nil
}

const (
	msgDenied   = "You do not have permission to perform this action."
	msgRequired = "This field is required."
)

// api answers one authentik API request.
func (s *Server) api(r *http.Request, body []byte) response {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return detail(http.StatusForbidden, "Authentication credentials were not provided.")
	}
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
		return detail(http.StatusForbidden, "Token invalid/expired")
	}

	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	if !strings.HasSuffix(path, "/") {
		return detail(http.StatusNotFound, "Not found.")
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	q := r.URL.Query()

	s.mu.Lock()
	defer s.mu.Unlock()

	type route struct {
		perm string
		fn   func() response
	}
	var rt *route
	allowed := func(methods ...string) bool { return slices.Contains(methods, r.Method) }
	switch {
	case match(segs, "core", "users", "me") && allowed("GET"):
		rt = &route{"", s.me}
	case match(segs, "flows", "instances") && allowed("GET"):
		rt = &route{"view_flow", func() response { return s.listFlows(q) }}
	case match(segs, "crypto", "certificatekeypairs") && allowed("GET"):
		rt = &route{"view_certificatekeypair", func() response { return s.listCerts(q) }}
	case match(segs, "propertymappings", "provider", "scope") && allowed("GET"):
		rt = &route{"view_scopemapping", func() response { return s.listScopes(q) }}
	case match(segs, "providers", "oauth2") && allowed("GET"):
		rt = &route{"view_oauth2provider", func() response { return s.listProviders(q) }}
	case match(segs, "providers", "oauth2") && allowed("POST"):
		rt = &route{"add_oauth2provider", func() response { return s.createProvider(body) }}
	case match(segs, "providers", "oauth2", "*") && allowed("GET"):
		rt = &route{"view_oauth2provider", func() response { return s.getProvider(segs[2]) }}
	case match(segs, "providers", "oauth2", "*") && allowed("DELETE"):
		rt = &route{"delete_oauth2provider", func() response { return s.deleteProvider(segs[2]) }}
	case match(segs, "providers", "oauth2", "*", "setup_urls") && allowed("GET"):
		rt = &route{"view_oauth2provider", func() response { return s.setupURLs(r, segs[2]) }}
	case match(segs, "core", "applications") && allowed("GET"):
		rt = &route{"view_application", func() response { return s.listApps(q) }}
	case match(segs, "core", "applications") && allowed("POST"):
		rt = &route{"add_application", func() response { return s.createApp(body) }}
	case match(segs, "core", "applications", "*") && allowed("GET"):
		rt = &route{"view_application", func() response { return s.getApp(segs[2]) }}
	case match(segs, "core", "applications", "*") && allowed("DELETE"):
		rt = &route{"delete_application", func() response { return s.deleteApp(segs[2]) }}
	}
	if rt == nil {
		if known(segs) {
			return detail(http.StatusMethodNotAllowed, fmt.Sprintf("Method %q not allowed.", r.Method))
		}
		return detail(http.StatusNotFound, "Not found.")
	}
	if rt.perm != "" && s.denied[rt.perm] {
		return detail(http.StatusForbidden, msgDenied)
	}
	return rt.fn()
}

// match compares path segments with a pattern where "*" is any one segment.
func match(segs []string, pattern ...string) bool {
	if len(segs) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if (p != "*" && p != segs[i]) || segs[i] == "" {
			return false
		}
	}
	return true
}

func known(segs []string) bool {
	for _, p := range [][]string{
		{"core", "users", "me"}, {"flows", "instances"}, {"crypto", "certificatekeypairs"},
		{"propertymappings", "provider", "scope"}, {"providers", "oauth2"}, {"providers", "oauth2", "*"},
		{"providers", "oauth2", "*", "setup_urls"}, {"core", "applications"}, {"core", "applications", "*"},
	} {
		if match(segs, p...) {
			return true
		}
	}
	return false
}

func (s *Server) me() response {
	u := map[string]any{
		"pk": adminPK, "username": AdminUsername, "name": "authentik Default Admin",
		"is_active": true, "is_superuser": true, "is_current": true,
		"groups":             []any{map[string]any{"name": "authentik Admins", "pk": s.uuid()}},
		"roles":              []any{},
		"email":              "admin@example.com",
		"avatar":             "data:image/svg+xml;base64,PHN2Zy8+",
		"uid":                "d4a7a6a3c7b5f3e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7",
		"settings":           map[string]any{},
		"type":               "internal",
		"system_permissions": []string{},
	}
	return jsonResponse(http.StatusOK, map[string]any{"user": u, "users": []any{u}})
}

// paginate answers one page of items the way authentik's Pagination does.
func (s *Server) paginate(q url.Values, items []map[string]any) response {
	page, size := 1, 20
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return detail(http.StatusNotFound, "Invalid page.")
		}
		page = n
	}
	if v := q.Get("page_size"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			size = min(n, 100)
		}
	}
	count := len(items)
	pages := max(1, (count+size-1)/size)
	if page > pages {
		return detail(http.StatusNotFound, "Invalid page.")
	}
	start := (page - 1) * size
	end := min(start+size, count)
	next, prev, startIndex, endIndex := 0, 0, 0, 0
	if page < pages {
		next = page + 1
	}
	if page > 1 {
		prev = page - 1
	}
	if count > 0 {
		startIndex, endIndex = start+1, end
	}
	results := items[start:end]
	if results == nil {
		results = []map[string]any{}
	}
	return jsonResponse(http.StatusOK, map[string]any{
		"pagination": map[string]any{
			"next": next, "previous": prev, "count": count, "current": page,
			"total_pages": pages, "start_index": startIndex, "end_index": endIndex,
		},
		"results":      results,
		"autocomplete": map[string]any{},
	})
}

// filter reports whether a query filter is absent, ignored (IgnoreFilters)
// or equal to v. s.mu must be held.
func (s *Server) filter(q url.Values, key, v string) bool {
	if !q.Has(key) || s.ignoredFilters[key] {
		return true
	}
	return q.Get(key) == v
}

func search(q url.Values, fields ...string) bool {
	term := strings.ToLower(q.Get("search"))
	if term == "" {
		return true
	}
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), term) {
			return true
		}
	}
	return false
}

func (s *Server) listFlows(q url.Values) response {
	var out []map[string]any
	for _, f := range s.flows {
		if s.filter(q, "designation", f.designation) && s.filter(q, "slug", f.slug) && s.filter(q, "name", f.name) &&
			s.filter(q, "flow_uuid", f.pk) && search(q, f.name, f.slug, f.title) {
			out = append(out, s.renderFlow(f))
		}
	}
	return s.paginate(q, out)
}

func (s *Server) renderFlow(f *flow) map[string]any {
	m := map[string]any{
		"pk": f.pk, "policybindingmodel_ptr_id": f.pk, "name": f.name, "slug": f.slug, "title": f.title,
		"designation": f.designation, "background": "", "background_url": "/static/dist/assets/images/flow_background.jpg",
		"background_themed_urls": nil, "stages": []string{}, "policies": []string{}, "cache_count": 0,
		"policy_engine_mode": "any", "compatibility_mode": false, "export_url": "/api/v3/flows/instances/" + f.slug + "/export/",
		"layout": "stacked", "denied_action": "message_continue", "authentication": "none",
	}
	if s.version == "2026.11" {
		delete(m, "compatibility_mode")
		m["default_recovery"] = nil
	}
	return m
}

func (s *Server) listCerts(q url.Values) response {
	var out []map[string]any
	for _, c := range s.certs {
		hasKey := strconv.FormatBool(c.key != nil)
		if s.filter(q, "name", c.name) && s.filter(q, "has_key", hasKey) && search(q, c.name) {
			out = append(out, s.renderCert(c))
		}
	}
	return s.paginate(q, out)
}

func (s *Server) renderCert(c *cert) map[string]any {
	fp := keyFingerprint(c)
	m := map[string]any{
		"pk": c.pk, "name": c.name,
		"fingerprint_sha256": fp, "fingerprint_sha1": fp[:40],
		"cert_expiry": c.created.AddDate(1, 0, 0).Format(time.RFC3339), "cert_subject": "CN=authentik Self-signed Certificate",
		"private_key_available": c.key != nil, "key_type": "rsa",
		"certificate_download_url": "/api/v3/crypto/certificatekeypairs/" + c.pk + "/view_certificate/?download",
		"private_key_download_url": "/api/v3/crypto/certificatekeypairs/" + c.pk + "/view_private_key/?download",
		"managed":                  nil,
	}
	if s.version == "2026.11" {
		m["key_usage"] = nil
	}
	return m
}

func (s *Server) listScopes(q url.Values) response {
	managed := q["managed"]
	var out []map[string]any
	for _, m := range s.scopes {
		if len(managed) > 0 && !slices.Contains(managed, m.managed) {
			continue
		}
		if s.filter(q, "name", m.name) && s.filter(q, "scope_name", m.scopeName) && search(q, m.name, m.scopeName) {
			out = append(out, map[string]any{
				"pk": m.pk, "managed": m.managed, "name": m.name,
				"expression": "return {}", "component": "ak-property-mapping-provider-scope-form",
				"verbose_name": "Scope Mapping", "verbose_name_plural": "Scope Mappings",
				"meta_model_name": "authentik_providers_oauth2.scopemapping",
				"scope_name":      m.scopeName, "description": "",
			})
		}
	}
	return s.paginate(q, out)
}

func (s *Server) listProviders(q url.Values) response {
	var out []map[string]any
	for _, p := range s.providers {
		if s.filter(q, "client_id", p.ClientID) && s.filter(q, "name", p.Name) && search(q, p.Name) {
			out = append(out, s.renderProvider(p))
		}
	}
	return s.paginate(q, out)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) renderProvider(p *Provider) map[string]any {
	var appSlug, appName any
	if a := s.appForProvider(p.PK); a != nil {
		appSlug, appName = a.Slug, a.Name
	}
	redirects := make([]map[string]any, 0, len(p.RedirectURIs))
	for _, r := range p.RedirectURIs {
		redirects = append(redirects, map[string]any{"matching_mode": r.MatchingMode, "url": r.URL, "redirect_uri_type": "authorization"})
	}
	m := map[string]any{
		"pk": p.PK, "name": p.Name, "authentication_flow": nil,
		"authorization_flow": p.AuthorizationFlow, "invalidation_flow": p.InvalidationFlow,
		"property_mappings": nonNil(p.PropertyMappings), "component": "ak-provider-oauth2-form",
		"assigned_application_slug": appSlug, "assigned_application_name": appName,
		"assigned_backchannel_application_slug": nil, "assigned_backchannel_application_name": nil,
		"verbose_name": "OAuth2/OpenID Provider", "verbose_name_plural": "OAuth2/OpenID Providers",
		"meta_model_name": "authentik_providers_oauth2.oauth2provider",
		"client_type":     p.ClientType, "grant_types": []string{"authorization_code", "refresh_token"},
		"client_id": p.ClientID, "client_secret": p.ClientSecret,
		"access_code_validity": "minutes=1", "access_token_validity": "hours=1",
		"refresh_token_validity": "days=30", "refresh_token_threshold": "seconds=0",
		"include_claims_in_id_token": p.IncludeClaimsInIDToken,
		"signing_key":                nullable(p.SigningKey), "encryption_key": nullable(p.EncryptionKey),
		"redirect_uris": redirects, "logout_method": "backchannel",
		"sub_mode": "hashed_user_id", "issuer_mode": "per_provider",
		"jwt_federation_sources": []string{}, "jwt_federation_providers": []int{},
	}
	if s.version == "2026.11" {
		// A newer server: optional fields left out, new ones added.
		for _, k := range []string{"grant_types", "logout_method", "jwt_federation_sources", "jwt_federation_providers", "refresh_token_threshold"} {
			delete(m, k)
		}
		m["backchannel_logout_uri"] = nil
		m["device_code_validity"] = "minutes=10"
		m["dpop_required"] = false
	}
	return m
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) lookupProvider(id string) (*Provider, response, bool) {
	pk, err := strconv.Atoi(id)
	p := s.providerByPK(pk)
	if err != nil || p == nil {
		return nil, detail(http.StatusNotFound, "No OAuth2Provider matches the given query."), false
	}
	return p, response{}, true
}

func (s *Server) getProvider(id string) response {
	p, res, ok := s.lookupProvider(id)
	if !ok {
		return res
	}
	return jsonResponse(http.StatusOK, s.renderProvider(p))
}

func (s *Server) deleteProvider(id string) response {
	p, res, ok := s.lookupProvider(id)
	if !ok {
		return res
	}
	s.providers = slices.DeleteFunc(s.providers, func(x *Provider) bool { return x == p })
	for _, a := range s.apps {
		if a.Provider == p.PK {
			a.Provider = 0
		}
	}
	return response{status: http.StatusNoContent, header: http.Header{}}
}

func (s *Server) setupURLs(r *http.Request, id string) response {
	p, res, ok := s.lookupProvider(id)
	if !ok {
		return res
	}
	a := s.appForProvider(p.PK)
	if a == nil {
		return detail(http.StatusNotFound, "No Application matches the given query.")
	}
	base := "https://" + r.Host + "/application/o/"
	return jsonResponse(http.StatusOK, map[string]any{
		"issuer": base + a.Slug + "/", "authorize": base + "authorize/", "token": base + "token/",
		"user_info": base + "userinfo/", "provider_info": base + a.Slug + "/.well-known/openid-configuration",
		"logout": base + a.Slug + "/end-session/", "jwks": base + a.Slug + "/jwks/", "dcr_registration": nil,
	})
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	slugRE = regexp.MustCompile(`^[-a-zA-Z0-9_]+$`)
)

// form decodes a JSON object field by field with DRF's messages.
type form struct {
	m    map[string]json.RawMessage
	errs map[string]any
}

func parseForm(body []byte) (*form, response, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, detail(http.StatusBadRequest, "JSON parse error - Expecting value: line 1 column 1 (char 0)"), false
	}
	return &form{m: m, errs: map[string]any{}}, response{}, true
}

func (f *form) fail(key, msg string) {
	if l, ok := f.errs[key].([]string); ok {
		f.errs[key] = append(l, msg)
		return
	}
	f.errs[key] = []string{msg}
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// str reads a string field. It returns nil when the field is absent or null.
func (f *form) str(key string, required, nullOK, blankOK bool) *string {
	raw, ok := f.m[key]
	switch {
	case !ok:
		if required {
			f.fail(key, msgRequired)
		}
		return nil
	case isNull(raw):
		if !nullOK {
			f.fail(key, "This field may not be null.")
		}
		return nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		f.fail(key, "Not a valid string.")
		return nil
	}
	if strings.TrimSpace(v) == "" && !blankOK {
		f.fail(key, "This field may not be blank.")
		return nil
	}
	return &v
}

// ref reads a UUID reference that must name an existing object.
func (f *form) ref(key string, required, nullOK bool, exists func(string) bool) string {
	v := f.str(key, required, nullOK, false)
	if v == nil {
		return ""
	}
	if !uuidRE.MatchString(*v) {
		f.fail(key, fmt.Sprintf("“%s” is not a valid UUID.", *v))
		return ""
	}
	if !exists(*v) {
		f.fail(key, fmt.Sprintf("Invalid pk \"%s\" - object does not exist.", *v))
		return ""
	}
	return *v
}

func (f *form) boolean(key string, def bool) bool {
	raw, ok := f.m[key]
	if !ok {
		return def
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil {
		f.fail(key, "Must be a valid boolean.")
	}
	return v
}

func (f *form) choice(key, def string, choices ...string) string {
	v := f.str(key, false, false, false)
	if v == nil {
		return def
	}
	if !slices.Contains(choices, *v) {
		f.fail(key, fmt.Sprintf("\"%s\" is not a valid choice.", *v))
	}
	return *v
}

func (s *Server) createProvider(body []byte) response {
	f, res, ok := parseForm(body)
	if !ok {
		return res
	}
	flowExists := func(pk string) bool {
		return slices.ContainsFunc(s.flows, func(x *flow) bool { return x.pk == pk })
	}
	p := &Provider{}
	if v := f.str("name", true, false, false); v != nil {
		p.Name = *v
		if slices.ContainsFunc(s.providers, func(x *Provider) bool { return x.Name == p.Name }) {
			f.fail("name", "Provider with this name already exists.")
		}
	}
	p.AuthorizationFlow = f.ref("authorization_flow", true, false, flowExists)
	p.InvalidationFlow = f.ref("invalidation_flow", true, false, flowExists)
	p.ClientType = f.choice("client_type", "confidential", "confidential", "public")
	p.ClientID = s.randString(40)
	if v := f.str("client_id", false, false, false); v != nil {
		p.ClientID = *v
	}
	if slices.ContainsFunc(s.providers, func(x *Provider) bool { return x.ClientID == p.ClientID }) {
		f.fail("client_id", "OAuth2/OpenID Provider with this Client ID already exists.")
	}
	p.ClientSecret = s.randString(128)
	if v := f.str("client_secret", false, false, true); v != nil {
		p.ClientSecret = *v
	}
	p.IncludeClaimsInIDToken = f.boolean("include_claims_in_id_token", true)
	p.SigningKey = f.ref("signing_key", false, true, func(pk string) bool {
		c := s.certByPK(pk)
		return c != nil && c.key != nil
	})
	p.EncryptionKey = f.ref("encryption_key", false, true, func(pk string) bool { return s.certByPK(pk) != nil })
	p.PropertyMappings = s.parseMappings(f)
	p.RedirectURIs = parseRedirects(f)
	if len(f.errs) > 0 {
		return jsonResponse(http.StatusBadRequest, f.errs)
	}
	if s.ignoreSigningKey {
		p.SigningKey = ""
	}
	p.PK = s.nextPK
	s.nextPK++
	s.providers = append(s.providers, p)
	return jsonResponse(http.StatusCreated, s.renderProvider(p))
}

func (s *Server) parseMappings(f *form) []string {
	raw, ok := f.m["property_mappings"]
	if !ok {
		return []string{}
	}
	if isNull(raw) {
		f.fail("property_mappings", "This field may not be null.")
		return nil
	}
	var pks []string
	if err := json.Unmarshal(raw, &pks); err != nil {
		f.fail("property_mappings", "Expected a list of items but got type \"str\".")
		return nil
	}
	for _, pk := range pks {
		if !slices.ContainsFunc(s.scopes, func(m *scopeMapping) bool { return m.pk == pk }) {
			f.fail("property_mappings", fmt.Sprintf("Invalid pk \"%s\" - object does not exist.", pk))
		}
	}
	return nonNil(pks)
}

func parseRedirects(f *form) []RedirectURI {
	raw, ok := f.m["redirect_uris"]
	if !ok {
		f.fail("redirect_uris", msgRequired)
		return nil
	}
	var items []map[string]json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		f.fail("redirect_uris", "Expected a list of items.")
		return nil
	}
	out := make([]RedirectURI, 0, len(items))
	itemErrs := make([]map[string]any, len(items))
	bad := false
	for i, it := range items {
		sub := &form{m: it, errs: map[string]any{}}
		mode := sub.choice("matching_mode", "", "strict", "regex")
		if _, ok := it["matching_mode"]; !ok {
			sub.fail("matching_mode", msgRequired)
		}
		u := sub.str("url", true, false, false)
		if u != nil && mode == "regex" {
			if _, err := regexp.Compile(*u); err != nil {
				sub.fail("url", "Invalid Regular Expression Syntax")
			}
		}
		itemErrs[i] = sub.errs
		if len(sub.errs) > 0 {
			bad = true
			continue
		}
		out = append(out, RedirectURI{MatchingMode: mode, URL: *u})
	}
	if bad {
		f.errs["redirect_uris"] = itemErrs
	}
	return out
}

func (s *Server) listApps(q url.Values) response {
	var out []map[string]any
	for _, a := range s.apps {
		// Like authentik, the list shows only what the user may launch unless
		// a superuser asks for the full list; the token's user launches nothing.
		if q.Get("superuser_full_list") != "true" {
			continue
		}
		if s.filter(q, "slug", a.Slug) && s.filter(q, "name", a.Name) && search(q, a.Name, a.Slug) {
			out = append(out, s.renderApp(a))
		}
	}
	return s.paginate(q, out)
}

func (s *Server) renderApp(a *Application) map[string]any {
	var provider, providerObj any
	if p := s.providerByPK(a.Provider); p != nil {
		provider = p.PK
		full := s.renderProvider(p)
		obj := map[string]any{}
		for _, k := range []string{
			"pk", "name", "authentication_flow", "authorization_flow", "invalidation_flow", "property_mappings",
			"component", "assigned_application_slug", "assigned_application_name",
			"assigned_backchannel_application_slug", "assigned_backchannel_application_name",
			"verbose_name", "verbose_name_plural", "meta_model_name",
		} {
			obj[k] = full[k]
		}
		providerObj = obj
	}
	m := map[string]any{
		"pk": a.PK, "pbm_uuid": a.PK, "name": a.Name, "slug": a.Slug,
		"provider": provider, "provider_obj": providerObj,
		"backchannel_providers": []int{}, "backchannel_providers_obj": []any{},
		"launch_url": nil, "open_in_new_tab": false, "meta_launch_url": "", "meta_icon": "",
		"meta_icon_url": nil, "meta_icon_themed_urls": nil, "meta_description": "", "meta_publisher": "",
		"policy_engine_mode": a.PolicyEngineMode, "group": "", "meta_hide": false,
	}
	if s.version == "2026.11" {
		delete(m, "open_in_new_tab")
		m["meta_icon_themed_urls"] = nil
		m["entitlements_count"] = 0
	}
	return m
}

func (s *Server) getApp(slug string) response {
	a := s.appBySlug(slug)
	if a == nil {
		return detail(http.StatusNotFound, "No Application matches the given query.")
	}
	return jsonResponse(http.StatusOK, s.renderApp(a))
}

func (s *Server) deleteApp(slug string) response {
	a := s.appBySlug(slug)
	if a == nil {
		return detail(http.StatusNotFound, "No Application matches the given query.")
	}
	s.apps = slices.DeleteFunc(s.apps, func(x *Application) bool { return x == a })
	return response{status: http.StatusNoContent, header: http.Header{}}
}

func (s *Server) createApp(body []byte) response {
	f, res, ok := parseForm(body)
	if !ok {
		return res
	}
	a := &Application{}
	if v := f.str("name", true, false, false); v != nil {
		a.Name = *v
	}
	if v := f.str("slug", true, false, false); v != nil {
		a.Slug = *v
		switch {
		case !slugRE.MatchString(a.Slug):
			f.fail("slug", "Enter a valid “slug” consisting of letters, numbers, underscores or hyphens.")
		case slices.Contains(reservedSlugs, a.Slug):
			f.fail("slug", fmt.Sprintf("The slug '%s' is reserved.", a.Slug))
		case s.appBySlug(a.Slug) != nil:
			f.fail("slug", "Application with this slug already exists.")
		}
	}
	if raw, ok := f.m["provider"]; ok && !isNull(raw) {
		var pk int
		if err := json.Unmarshal(raw, &pk); err != nil {
			f.fail("provider", "Incorrect type. Expected pk value, received str.")
		} else if s.providerByPK(pk) == nil {
			f.fail("provider", fmt.Sprintf("Invalid pk \"%d\" - object does not exist.", pk))
		} else if s.appForProvider(pk) != nil {
			f.fail("provider", "Application with this provider already exists.")
		} else {
			a.Provider = pk
		}
	}
	a.PolicyEngineMode = f.choice("policy_engine_mode", "any", "all", "any")
	if len(f.errs) > 0 {
		return jsonResponse(http.StatusBadRequest, f.errs)
	}
	a.PK = s.uuid()
	s.apps = append(s.apps, a)
	return jsonResponse(http.StatusCreated, s.renderApp(a))
}

// AddApplication adds an application as if someone had made it by hand
// (e.g. to test a slug that is already taken).
func (s *Server) AddApplication(a Application) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.PK == "" {
		a.PK = s.uuid()
	}
	if a.PolicyEngineMode == "" {
		a.PolicyEngineMode = "any"
	}
	s.apps = append(s.apps, &a)
}
