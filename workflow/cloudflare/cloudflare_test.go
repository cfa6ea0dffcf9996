package cloudflare_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v7/option"
	"github.com/cloudflare/cloudflare-go/v7/zero_trust"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

const (
	account = "023e105f4ecef8ad9ca31a8372d0c353"
	secret  = "s3cr3t-Client-Secret-Value-0123456789"
)

// newServer starts a fake whose contract violations fail the test.
func newServer(t *testing.T, opts ...cloudflaretest.Option) *cloudflaretest.Server {
	t.Helper()
	srv := cloudflaretest.New(account, opts...)
	t.Cleanup(func() {
		srv.Close()
		if !srv.Validating() {
			t.Log("contracts not found: requests were not validated against cloudflare-openapi.json")
		}
		for _, err := range srv.ContractErrors() {
			t.Errorf("contract: %v", err)
		}
	})
	return srv
}

func newClient(srv *cloudflaretest.Server) *cloudflare.Client {
	return cloudflare.New(srv.AccountID(), workflow.NewSecret(srv.Token()), srv.URL(), &http.Client{Timeout: 10 * time.Second})
}

func spec(name string) workflow.IdentityProviderSpec {
	return workflow.IdentityProviderSpec{
		Name: name,
		Config: workflow.OIDCConfig{
			ClientID:       "client-" + name,
			AuthURL:        "https://auth.example.com/application/o/authorize/",
			TokenURL:       "https://auth.example.com/application/o/token/",
			CertsURL:       "https://auth.example.com/application/o/grafana/jwks/",
			Scopes:         []string{"openid", "email", "profile"},
			PKCEEnabled:    true,
			EmailClaimName: "email",
			Claims:         []string{"preferred_username"},
		},
		ClientSecret: workflow.NewSecret(secret),
	}
}

func apiError(t *testing.T, err error) *workflow.APIError {
	t.Helper()
	var api *workflow.APIError
	if !errors.As(err, &api) {
		t.Fatalf("error %v (%T) is not a *workflow.APIError", err, err)
	}
	if api.System != "cloudflare" {
		t.Errorf("System = %q, want cloudflare", api.System)
	}
	return api
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), secret) {
		t.Errorf("error leaks the client secret: %v", err)
	}
}

func TestOrganization(t *testing.T) {
	tests := []struct {
		name string
		opts []cloudflaretest.Option
		set  string
		want string
	}{
		{name: "default", want: "company.cloudflareaccess.com"},
		{name: "team", opts: []cloudflaretest.Option{cloudflaretest.WithTeam("acme")}, want: "acme.cloudflareaccess.com"},
		{name: "changed", set: "other.cloudflareaccess.com", want: "other.cloudflareaccess.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.opts...)
			if tt.set != "" {
				srv.SetAuthDomain(tt.set)
			}
			org, err := newClient(srv).Organization(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if org.AuthDomain != tt.want {
				t.Errorf("AuthDomain = %q, want %q", org.AuthDomain, tt.want)
			}
			if org.Name == "" {
				t.Error("Name is empty")
			}
		})
	}
}

func TestOrganizationWithoutAuthDomain(t *testing.T) {
	srv := newServer(t)
	srv.SetAuthDomain("")
	_, err := newClient(srv).Organization(t.Context())
	if err == nil || workflow.IsTransient(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
}

func TestAccountID(t *testing.T) {
	c := cloudflare.New("abc", workflow.NewSecret("t"), "", nil)
	if got := c.AccountID(); got != "abc" {
		t.Errorf("AccountID() = %q, want abc", got)
	}
}

func TestListIdentityProvidersPaging(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		maxPer    int
		wantPages int
	}{
		{name: "empty", n: 0, maxPer: 2, wantPages: 1},
		{name: "one page", n: 3, maxPer: 50, wantPages: 1},
		{name: "exact pages", n: 6, maxPer: 2, wantPages: 3},
		{name: "partial last page", n: 7, maxPer: 2, wantPages: 4},
		{name: "one per page", n: 5, maxPer: 1, wantPages: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, cloudflaretest.WithMaxPerPage(tt.maxPer))
			var want []workflow.IdentityProvider
			for i := range tt.n {
				p := cloudflaretest.IdentityProvider{Name: fmt.Sprintf("idp-%d", i), Type: "oidc", Config: cloudflaretest.Config{
					ClientID: fmt.Sprintf("cid-%d", i), ClientSecret: secret, AuthURL: "https://a/", TokenURL: "https://t/", CertsURL: "https://c/",
					Scopes: []string{"openid"}, PKCEEnabled: i%2 == 0, EmailClaimName: "email", Claims: []string{"groups"},
				}}
				if i%3 == 1 {
					p = cloudflaretest.IdentityProvider{Name: fmt.Sprintf("pin-%d", i), Type: "onetimepin"}
				}
				srv.AddIdentityProvider(p)
			}
			for _, p := range srv.IdentityProviders() {
				w := workflow.IdentityProvider{ID: p.ID, Name: p.Name, Type: p.Type}
				if p.Type == "oidc" {
					w.Config = workflow.OIDCConfig{ClientID: p.Config.ClientID, AuthURL: p.Config.AuthURL, TokenURL: p.Config.TokenURL,
						CertsURL: p.Config.CertsURL, Scopes: p.Config.Scopes, PKCEEnabled: p.Config.PKCEEnabled,
						EmailClaimName: p.Config.EmailClaimName, Claims: p.Config.Claims}
				}
				want = append(want, w)
			}

			got, err := newClient(srv).ListIdentityProviders(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if n := srv.Calls(http.MethodGet, "/access/identity_providers"); n != tt.wantPages {
				t.Errorf("list made %d requests, want %d", n, tt.wantPages)
			}
		})
	}
}

// TestListKeepsUnreadableLoginMethods: a login method of someone else's
// whose config does not decode must not fail the list (every run's preflight
// and create would fail, retried as transient until they gave up): it is
// listed, marked Unreadable, beside the others read as usual.
func TestListKeepsUnreadableLoginMethods(t *testing.T) {
	good := cloudflaretest.IdentityProvider{Name: "grafana", Type: "oidc", Config: cloudflaretest.Config{
		ClientID: "cid", ClientSecret: secret, AuthURL: "https://a/", TokenURL: "https://t/", CertsURL: "https://c/", Scopes: []string{"openid"},
	}}
	tests := []struct {
		name   string
		raw    string
		maxPer int
		want   string // in Unreadable
	}{
		{name: "scopes as a string", raw: `{"client_id":"x","scopes":"openid email"}`, want: "unexpected JSON string for scopes"},
		{name: "pkce as a string", raw: `{"client_id":"x","pkce_enabled":"true"}`, want: "unexpected JSON string for pkce_enabled"},
		{name: "claims as an object, on a later page", raw: `{"client_id":"x","claims":{"email":"mail"}}`, maxPer: 1, want: "unexpected JSON object for claims"},
		{name: "client_id as a number", raw: `{"client_id":42}`, want: "unexpected JSON number for client_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			per := 50
			if tt.maxPer > 0 {
				per = tt.maxPer
			}
			srv := newServer(t, cloudflaretest.WithMaxPerPage(per))
			srv.AddIdentityProvider(good)
			srv.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "someone else's", Type: "oidc", RawConfig: json.RawMessage(tt.raw)})
			srv.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "pin", Type: "onetimepin"})
			got, err := newClient(srv).ListIdentityProviders(t.Context())
			if err != nil {
				t.Fatalf("list failed (transient %v): %v", workflow.IsTransient(err), err)
			}
			if len(got) != 3 {
				t.Fatalf("listed %d login methods, want 3: %+v", len(got), got)
			}
			if got[0].Unreadable != "" || got[0].Config.ClientID != "cid" || got[2].Unreadable != "" {
				t.Errorf("readable login methods: %+v, %+v", got[0], got[2])
			}
			bad := got[1]
			if bad.Name != "someone else's" || bad.ID == "" || bad.Type != "oidc" || !strings.Contains(bad.Unreadable, tt.want) {
				t.Errorf("unreadable login method %+v, want it named, with its ID and Unreadable saying %q", bad, tt.want)
			}
			if !reflect.DeepEqual(bad.Config, workflow.OIDCConfig{}) {
				t.Errorf("an unreadable config was half read: %+v", bad.Config)
			}
		})
	}
}

// TestOIDCConfigFromRawJSON shows why the adapter decodes the raw config:
// the SDK's union reads an oidc login method as AzureAD.
func TestOIDCConfigFromRawJSON(t *testing.T) {
	srv := newServer(t)
	c := newClient(srv)
	created, err := c.CreateIdentityProvider(t.Context(), spec("grafana"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetIdentityProvider(t.Context(), created.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := workflow.IdentityProvider{ID: created.ID, Name: "grafana", Type: "oidc", Config: spec("grafana").Config}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(created, want) {
		t.Errorf("create returned %+v\nwant %+v", created, want)
	}

	svc := zero_trust.NewIdentityProviderService(option.WithBaseURL(srv.URL()), option.WithAPIToken(srv.Token()), option.WithMaxRetries(0))
	var params zero_trust.IdentityProviderGetParams
	params.AccountID.Value, params.AccountID.Present = account, true
	raw, err := svc.Get(t.Context(), created.ID, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, isOIDC := raw.AsUnion().(zero_trust.IdentityProviderAccessOIDC); isOIDC {
		t.Log("the SDK now decodes oidc correctly; the raw decoding stays harmless")
	} else {
		t.Logf("AsUnion gave %T for an oidc login method", raw.AsUnion())
	}
}

func TestGetIdentityProviderNotFound(t *testing.T) {
	srv := newServer(t)
	_, err := newClient(srv).GetIdentityProvider(t.Context(), "f174e90a-fafe-4643-bbbc-4a0ed4fc8415")
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	api := apiError(t, err)
	if api.Status != http.StatusNotFound || api.Transient() || api.Message == "" {
		t.Errorf("got %+v, want a permanent 404 with a message", api)
	}
}

func TestCreateIdentityProvider(t *testing.T) {
	srv := newServer(t)
	idp, err := newClient(srv).CreateIdentityProvider(t.Context(), spec("grafana"))
	if err != nil {
		t.Fatal(err)
	}
	if idp.ID == "" || idp.Type != "oidc" || idp.Name != "grafana" {
		t.Errorf("created %+v", idp)
	}
	stored := srv.IdentityProviders()
	if len(stored) != 1 {
		t.Fatalf("fake holds %d login methods, want 1", len(stored))
	}
	want := cloudflaretest.Config{
		ClientID: "client-grafana", ClientSecret: secret,
		AuthURL: spec("").Config.AuthURL, TokenURL: spec("").Config.TokenURL, CertsURL: spec("").Config.CertsURL,
		Scopes: []string{"openid", "email", "profile"}, PKCEEnabled: true, EmailClaimName: "email", Claims: []string{"preferred_username"},
	}
	if got := stored[0].Config; !reflect.DeepEqual(got, want) {
		t.Errorf("fake received config\n %+v\nwant\n %+v", got, want)
	}
	if n := srv.Calls(http.MethodPost, "/identity_providers"); n != 1 {
		t.Errorf("create made %d requests, want 1", n)
	}
}

// TestCreateOneRequest: whatever goes wrong, a create is sent once; the
// engine decides about retries after a reconcile.
func TestCreateOneRequest(t *testing.T) {
	tests := []struct {
		name           string
		fault          cloudflaretest.Fault
		wantStatus     int
		wantRetryAfter time.Duration
		wantStored     int
	}{
		{name: "500", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 500}, wantStatus: 500},
		{name: "502", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 502}, wantStatus: 502},
		{name: "503", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 503}, wantStatus: 503},
		{name: "429", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 429, RetryAfter: "7"}, wantStatus: 429, wantRetryAfter: 7 * time.Second},
		{name: "429 without retry-after", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 429}, wantStatus: 429},
		{name: "reset", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultReset}},
		{name: "malformed", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultMalformed}},
		{name: "applied then reset", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultApplyThenReset}, wantStored: 1},
		{name: "timeout", fault: cloudflaretest.Fault{Kind: cloudflaretest.FaultTimeout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			tt.fault.Method = http.MethodPost
			tt.fault.PathContains = "/identity_providers"
			tt.fault.Times = 1
			srv.AddFault(tt.fault)
			ctx := t.Context()
			if tt.fault.Kind == cloudflaretest.FaultTimeout {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
			}

			_, err := newClient(srv).CreateIdentityProvider(ctx, spec("grafana"))
			if err == nil {
				t.Fatal("create succeeded, want an error")
			}
			noSecret(t, err)
			api := apiError(t, err)
			if !workflow.IsTransient(err) {
				t.Errorf("%v: not transient", err)
			}
			if api.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d", api.Status, tt.wantStatus)
			}
			if got := workflow.RetryAfter(err); got != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", got, tt.wantRetryAfter)
			}
			if n := srv.Calls(http.MethodPost, "/identity_providers"); n != 1 {
				t.Errorf("create made %d requests, want exactly 1", n)
			}
			if n := len(srv.IdentityProviders()); n != tt.wantStored {
				t.Errorf("fake holds %d login methods, want %d", n, tt.wantStored)
			}
			if tt.fault.Kind == cloudflaretest.FaultTimeout && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name          string
		fault         *cloudflaretest.Fault
		deny          bool
		wantStatus    int
		wantTransient bool
		wantCode      int
		wantMessage   string
	}{
		{name: "403 token", deny: true, wantStatus: 403, wantCode: 10000, wantMessage: "Access: Organizations, Identity Providers, and Groups Write"},
		{name: "500", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 500}, wantStatus: 500, wantTransient: true},
		{name: "503", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 503}, wantStatus: 503, wantTransient: true},
		{name: "429", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 429, RetryAfter: "3"}, wantStatus: 429, wantTransient: true, wantCode: 971},
		{name: "400", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 400}, wantStatus: 400},
		// Go's transport replays an idempotent GET once on a reused
		// connection that breaks, so the reset must hit every call.
		{name: "reset", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultReset}, wantTransient: true},
		{name: "malformed", fault: &cloudflaretest.Fault{Kind: cloudflaretest.FaultMalformed}, wantTransient: true},
	}
	calls := []struct {
		name string
		path string
		call func(ctx context.Context, c *cloudflare.Client) error
	}{
		{"organization", "/access/organizations", func(ctx context.Context, c *cloudflare.Client) error {
			_, err := c.Organization(ctx)
			return err
		}},
		{"list", "/access/identity_providers", func(ctx context.Context, c *cloudflare.Client) error {
			_, err := c.ListIdentityProviders(ctx)
			return err
		}},
		{"get", "/access/identity_providers/", func(ctx context.Context, c *cloudflare.Client) error {
			_, err := c.GetIdentityProvider(ctx, "00000001-0000-4000-8000-000000000001")
			return err
		}},
	}
	for _, tt := range tests {
		for _, cl := range calls {
			t.Run(tt.name+"/"+cl.name, func(t *testing.T) {
				srv := newServer(t)
				srv.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "x", Type: "onetimepin"})
				if tt.deny {
					srv.DenyToken()
				}
				if tt.fault != nil {
					f := *tt.fault
					f.Method, f.PathContains = http.MethodGet, cl.path
					srv.AddFault(f)
				}
				err := cl.call(t.Context(), newClient(srv))
				if err == nil {
					t.Fatal("no error")
				}
				api := apiError(t, err)
				if api.Status != tt.wantStatus {
					t.Errorf("Status = %d, want %d (%v)", api.Status, tt.wantStatus, err)
				}
				if got := workflow.IsTransient(err); got != tt.wantTransient {
					t.Errorf("IsTransient = %v, want %v (%v)", got, tt.wantTransient, err)
				}
				if tt.wantCode != 0 && api.Code != tt.wantCode {
					t.Errorf("Code = %d, want %d", api.Code, tt.wantCode)
				}
				if !strings.Contains(err.Error(), tt.wantMessage) {
					t.Errorf("error %q does not contain %q", err, tt.wantMessage)
				}
				if errors.Is(err, workflow.ErrNotFound) {
					t.Errorf("%v is ErrNotFound", err)
				}
				if n := srv.Calls(http.MethodGet, cl.path); tt.fault != nil && tt.fault.Kind == cloudflaretest.FaultStatus && n != 1 {
					t.Errorf("made %d requests, want 1 (no SDK retries)", n)
				}
			})
		}
	}
}

// TestProxyRefusal: a 401 or 403 without Cloudflare's envelope is a
// proxy's, and says nothing of the token's permissions.
func TestProxyRefusal(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, "<h1>Access denied</h1>")
		}))
		_, err := cloudflare.New(account, workflow.NewSecret("t"), srv.URL, nil).Organization(t.Context())
		srv.Close()
		if api := apiError(t, err); api.Status != status || strings.Contains(err.Error(), "Groups Write") {
			t.Errorf("err = %v; want %d without the permission hint", err, status)
		}
	}
}

func TestTimeout(t *testing.T) {
	srv := newServer(t)
	srv.AddFault(cloudflaretest.Fault{Method: http.MethodGet, Kind: cloudflaretest.FaultTimeout})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := newClient(srv).ListIdentityProviders(ctx)
	api := apiError(t, err)
	if api.Status != 0 || !workflow.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v (%+v), want a transient timeout", err, api)
	}
}

func TestLatencyWithinDeadline(t *testing.T) {
	srv := newServer(t)
	srv.SetLatency(20 * time.Millisecond)
	if _, err := newClient(srv).Organization(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	srv.SetLatency(time.Hour)
	_, err := newClient(srv).Organization(ctx)
	if !workflow.IsTransient(err) {
		t.Errorf("err = %v, want transient", err)
	}
}

func TestTransportError(t *testing.T) {
	srv := cloudflaretest.New(account)
	url, token := srv.URL(), srv.Token()
	srv.Close()
	c := cloudflare.New(account, workflow.NewSecret(token), url, nil)
	_, err := c.CreateIdentityProvider(t.Context(), spec("grafana"))
	api := apiError(t, err)
	if api.Status != 0 || api.Err == nil || !workflow.IsTransient(err) {
		t.Errorf("got %+v, want a transient transport error", api)
	}
	noSecret(t, err)
	if strings.Contains(err.Error(), token) {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestCreateInvalid(t *testing.T) {
	srv := newServer(t)
	s := spec("grafana")
	s.Config.AuthURL = ""
	_, err := newClient(srv).CreateIdentityProvider(t.Context(), s)
	api := apiError(t, err)
	if api.Status != 400 || api.Code != 12130 || workflow.IsTransient(err) || !strings.Contains(api.Message, "auth_url") {
		t.Errorf("got %+v, want a permanent 400 code 12130 naming auth_url", api)
	}
	noSecret(t, err)
}

// TestSecretNeverInErrors answers with a server that echoes the request
// (body and headers) back in every error: the adapter must not repeat it.
func TestSecretNeverInErrors(t *testing.T) {
	statuses := []int{400, 403, 404, 409, 422, 429, 500, 502}
	for _, status := range statuses {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				msg := fmt.Sprintf("bad request %s %s auth=%s", r.URL, body, r.Header.Get("Authorization"))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_ = json.NewEncoder(w).Encode(map[string]any{"success": false, "result": nil, "messages": []any{},
					"errors": []map[string]any{{"code": 1000 + status, "message": msg}}})
			}))
			defer echo.Close()
			c := cloudflare.New(account, workflow.NewSecret(secret), echo.URL, nil)
			_, err := c.CreateIdentityProvider(t.Context(), spec("grafana"))
			if err == nil {
				t.Fatal("no error")
			}
			noSecret(t, err)
			api := apiError(t, err)
			if api.Code != 1000+status || !strings.Contains(api.Message, "[redacted]") {
				t.Errorf("got %+v, want the API's code and its message with the secret redacted", api)
			}
		})
	}
}

func TestVerifyToken(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		srv := newServer(t)
		if err := newClient(srv).VerifyToken(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls(http.MethodGet, "/user/tokens/verify"); n != 1 {
			t.Errorf("user verify calls = %d, want 1", n)
		}
	})
	t.Run("account-owned token", func(t *testing.T) {
		srv := newServer(t)
		srv.AddFault(cloudflaretest.Fault{PathContains: "/user/tokens/verify", Kind: cloudflaretest.FaultStatus, Status: 401})
		if err := newClient(srv).VerifyToken(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := srv.Calls(http.MethodGet, "/accounts/"+account+"/tokens/verify"); n != 1 {
			t.Errorf("account verify calls = %d, want 1", n)
		}
	})
	t.Run("denied", func(t *testing.T) {
		srv := newServer(t)
		srv.DenyToken()
		err := newClient(srv).VerifyToken(t.Context())
		api := apiError(t, err)
		// Verifying needs no permission: a refusal is of the token itself.
		if api.Status != 403 || workflow.IsTransient(err) || strings.Contains(err.Error(), "Groups Write") || !strings.Contains(err.Error(), "does not accept the token itself") {
			t.Errorf("got %v, want a permanent 403 about the token itself, without the permission hint", err)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		srv := newServer(t)
		c := cloudflare.New(account, workflow.NewSecret("wrong"), srv.URL(), nil)
		if err := c.VerifyToken(t.Context()); err == nil || workflow.IsTransient(err) || !strings.Contains(err.Error(), "set CLOUDFLARE_API_TOKEN") {
			t.Errorf("err = %v, want a permanent error saying to set another token", err)
		}
	})
	// A token Cloudflare calls inactive is refused; an answer with no
	// status at all is not Cloudflare's and says nothing of the token.
	for _, tt := range []struct {
		name, body string
		inactive   bool
	}{
		{"disabled", `{"success":true,"errors":[],"messages":[],"result":{"id":"x","status":"disabled"}}`, true},
		{"expired", `{"success":true,"errors":[],"messages":[],"result":{"id":"x","status":"expired"}}`, true},
		{"no status", `{"success":true,"result":{}}`, false},
		{"another API's ok", `{"ok":true}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tt.body) }))
			defer srv.Close()
			err := cloudflare.New(account, workflow.NewSecret("t"), srv.URL, nil).VerifyToken(t.Context())
			var inactive *cloudflare.TokenStatusError
			var api *workflow.APIError
			switch {
			case tt.inactive && (!errors.As(err, &inactive) || workflow.IsTransient(err)):
				t.Errorf("err = %v; want a permanent *cloudflare.TokenStatusError", err)
			case !tt.inactive && (errors.As(err, &inactive) || !errors.As(err, &api) || api.Status != 0 || !strings.Contains(err.Error(), "no token status")):
				t.Errorf("err = %v; want a *workflow.APIError for a malformed answer, no token status", err)
			}
		})
	}
	// Only Cloudflare's own refusal (its envelope gives a code) speaks of
	// the token; a proxy's 401 or 403 does not.
	for _, tt := range []struct {
		name, body string
		status     int
		want, not  string
	}{
		{"refused", `{"success":false,"errors":[{"code":1000,"message":"Invalid API Token"}],"messages":[],"result":null}`, 401, "does not accept the token itself", "Groups Write"},
		{"unreadable token", `{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}],"messages":[],"result":null}`, 400, "cannot read the token", "does not accept"},
		{"a proxy's 403", `<h1>Forbidden</h1>`, 403, "403 Forbidden", "the token"},
		{"a proxy's 401", `{"error":"login"}`, 401, "401 Unauthorized", "the token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			err := cloudflare.New(account, workflow.NewSecret("t"), srv.URL, nil).VerifyToken(t.Context())
			if api := apiError(t, err); api.Status != tt.status || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.not) {
				t.Errorf("err = %v; want %d, %q and not %q", err, tt.status, tt.want, tt.not)
			}
		})
	}
	t.Run("unavailable", func(t *testing.T) {
		srv := newServer(t)
		srv.AddFault(cloudflaretest.Fault{Kind: cloudflaretest.FaultStatus, Status: 503})
		err := newClient(srv).VerifyToken(t.Context())
		if !workflow.IsTransient(err) {
			t.Errorf("err = %v, want transient", err)
		}
		if n := srv.Calls("", "tokens/verify"); n != 1 {
			t.Errorf("verify calls = %d, want 1 (no fallback on a transient error)", n)
		}
	})
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRateLimit(t *testing.T) {
	srv := newServer(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv.SetRateLimit(3, 5*time.Minute, clk.Now)
	c := newClient(srv)
	for i := range 3 {
		if _, err := c.Organization(t.Context()); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := c.CreateIdentityProvider(t.Context(), spec("grafana"))
	if !workflow.IsTransient(err) || workflow.RetryAfter(err) != 5*time.Minute {
		t.Fatalf("err = %v (retry after %v), want a transient 429 asking for 5m", err, workflow.RetryAfter(err))
	}
	clk.Advance(4 * time.Minute)
	_, err = c.Organization(t.Context())
	if apiError(t, err).Status != 429 || workflow.RetryAfter(err) != time.Minute {
		t.Fatalf("err = %v (retry after %v), want 429 for the rest of the block", err, workflow.RetryAfter(err))
	}
	clk.Advance(time.Minute)
	if _, err := c.Organization(t.Context()); err != nil {
		t.Fatalf("after the block: %v", err)
	}
	if n := len(srv.IdentityProviders()); n != 0 {
		t.Errorf("a refused create was applied: %d login methods", n)
	}
}

// TestFakeLogsNoSecret runs creates through faults with the fake's log on.
func TestFakeLogsNoSecret(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	srv := newServer(t, cloudflaretest.WithLogger(slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))))
	srv.AddFault(cloudflaretest.Fault{Method: http.MethodPost, Kind: cloudflaretest.FaultStatus, Status: 500, Times: 1})
	srv.AddFault(cloudflaretest.Fault{Method: http.MethodPost, Kind: cloudflaretest.FaultApplyThenReset, Times: 1})
	c := newClient(srv)
	for range 3 {
		_, err := c.CreateIdentityProvider(t.Context(), spec("grafana"))
		noSecret(t, err)
	}
	if _, err := c.ListIdentityProviders(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "identity_providers") {
		t.Fatalf("the fake logged nothing: %q", buf.String())
	}
	if strings.Contains(buf.String(), secret) {
		t.Errorf("the fake's log holds the client secret")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestRandomFaults: under random faults every error is classified and a
// list eventually succeeds when tried again.
func TestRandomFaults(t *testing.T) {
	srv := newServer(t)
	srv.SetFaultRate(0.5, 42)
	c := newClient(srv)
	var failures, successes int
	for range 40 {
		_, err := c.ListIdentityProviders(t.Context())
		if err != nil {
			failures++
			if !workflow.IsTransient(err) {
				t.Errorf("permanent error under transient faults: %v", err)
			}
			continue
		}
		successes++
	}
	if failures == 0 || successes == 0 {
		t.Errorf("failures=%d successes=%d, want both", failures, successes)
	}
}

// TestListServerIgnoresPage: a server that answers page 1 to every page
// must not make the list loop or repeat login methods.
func TestListServerIgnoresPage(t *testing.T) {
	items := make([]map[string]any, 50)
	for i := range items {
		items[i] = map[string]any{"id": fmt.Sprintf("id-%d", i), "name": "n", "type": "onetimepin", "config": map[string]any{}}
	}
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": items})
	}))
	defer srv.Close()
	_, err := cloudflare.New(account, workflow.NewSecret("t"), srv.URL, nil).ListIdentityProviders(t.Context())
	if err == nil || workflow.IsTransient(err) {
		t.Errorf("err = %v, want a permanent error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d requests, want 2", calls)
	}
}

// BenchmarkListIdentityProviders lists an account holding 211 login methods
// of mixed types (5 pages), as preflight and the create step each do.
func BenchmarkListIdentityProviders(b *testing.B) {
	srv := cloudflaretest.New(account, cloudflaretest.WithoutContract())
	b.Cleanup(srv.Close)
	for i := range 211 {
		p := cloudflaretest.IdentityProvider{Name: fmt.Sprintf("idp-%d", i), Type: "oidc", Config: cloudflaretest.Config{
			ClientID: fmt.Sprintf("cid-%d", i), ClientSecret: secret, AuthURL: "https://a/", TokenURL: "https://t/", CertsURL: "https://c/",
			Scopes: []string{"openid", "email", "profile"}, EmailClaimName: "email",
		}}
		if i%4 == 1 {
			p = cloudflaretest.IdentityProvider{Name: fmt.Sprintf("pin-%d", i), Type: "onetimepin"}
		}
		srv.AddIdentityProvider(p)
	}
	c := newClient(srv)
	for b.Loop() {
		got, err := c.ListIdentityProviders(b.Context())
		if err != nil || len(got) != 211 {
			b.Fatalf("listed %d, %v; want 211", len(got), err)
		}
	}
}

// shiftingList serves a list of login methods from pages(read, page): the
// IDs on that page of the read'th read of the list (a read starts at page
// 1), and the total_count answered with them.
func shiftingList(t *testing.T, pages func(read, page int) (ids []string, total int)) (c *cloudflare.Client, requests func() int) {
	t.Helper()
	var mu sync.Mutex
	n, read := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		mu.Lock()
		n++
		if page == 1 {
			read++
		}
		ids, total := pages(read, page)
		mu.Unlock()
		items := []map[string]any{}
		for _, id := range ids {
			items = append(items, map[string]any{"id": id, "name": "n", "type": "onetimepin", "config": map[string]any{}})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": items,
			"result_info": map[string]any{"page": page, "per_page": 2, "count": len(items), "total_count": total}})
	}))
	t.Cleanup(srv.Close)
	return cloudflare.New(account, workflow.NewSecret("t"), srv.URL, nil), func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// pagesOf splits ids into pages of two.
func pagesOf(ids []string, page int) []string {
	start := min((page-1)*2, len(ids))
	return ids[start:min(start+2, len(ids))]
}

// TestListReadsAgainWhenTheListShifts: a login method added or deleted
// between two pages shifts the others across pages. A list that sees it
// happen reads again from the start, so that none is missed or repeated.
func TestListReadsAgainWhenTheListShifts(t *testing.T) {
	before := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		// during is the list from page 2 of the first read on.
		during []string
		// total is the total_count answered with during; 0: len(during).
		total        int
		wantRequests int
	}{
		// "a" deleted: "c" moves to page 1, already read.
		{name: "deleted, total_count drops", during: []string{"b", "c", "d", "e"}, wantRequests: 2 + 2},
		{name: "deleted, total_count stale", during: []string{"b", "c", "d", "e"}, total: 5, wantRequests: 3 + 2},
		// "z" added first: "b" moves to page 2, read again.
		{name: "added, total_count stale", during: []string{"z", "a", "b", "c", "d", "e"}, total: 5, wantRequests: 2 + 3},
		// Every login method but the first two deleted: page 2 comes back empty.
		{name: "page runs out, total_count stale", during: []string{"a", "b"}, total: 5, wantRequests: 2 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, requests := shiftingList(t, func(read, page int) ([]string, int) {
				if read == 1 && page == 1 {
					return pagesOf(before, page), len(before)
				}
				total := tt.total
				if total == 0 || read > 1 {
					total = len(tt.during)
				}
				return pagesOf(tt.during, page), total
			})
			got, err := c.ListIdentityProviders(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, x := range got {
				ids = append(ids, x.ID)
			}
			if !reflect.DeepEqual(ids, tt.during) {
				t.Errorf("listed %v, want %v", ids, tt.during)
			}
			if n := requests(); n != tt.wantRequests {
				t.Errorf("%d requests, want %d", n, tt.wantRequests)
			}
		})
	}
}

// TestListThatNeverSettles: a list that changes during every read is given
// up after three reads as transient, so that the step tries again later
// rather than taking a login method it missed for absent.
func TestListThatNeverSettles(t *testing.T) {
	c, requests := shiftingList(t, func(read, page int) ([]string, int) {
		// One more login method on every request.
		return pagesOf([]string{"a", "b", "c", "d", "e", "f"}, page), 3 + read*2 + page
	})
	_, err := c.ListIdentityProviders(t.Context())
	if api := apiError(t, err); !api.Transient() || !strings.Contains(err.Error(), "changed while they were listed") {
		t.Errorf("err = %v, want a transient error saying the list changed", err)
	}
	if n := requests(); n != 3*2 {
		t.Errorf("%d requests, want 6 (two pages, three times)", n)
	}
}

// TestRedirectsNotFollowed: no call follows a redirect (the API never
// redirects: a wrong base URL or a proxy's login page does), so neither the
// token nor a create's client secret can reach the target. The failure is
// permanent and names the target by scheme and host only.
func TestRedirectsNotFollowed(t *testing.T) {
	var reached sync.Map
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reached.Store(r.Method+" "+r.URL.Path, string(b))
		io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"status":"active","auth_domain":"x.cloudflareaccess.com"}}`)
	}))
	defer target.Close()
	calls := []struct {
		name string
		call func(context.Context, *cloudflare.Client) error
	}{
		{"verify token", func(ctx context.Context, c *cloudflare.Client) error { return c.VerifyToken(ctx) }},
		{"organization", func(ctx context.Context, c *cloudflare.Client) error { _, err := c.Organization(ctx); return err }},
		{"list", func(ctx context.Context, c *cloudflare.Client) error {
			_, err := c.ListIdentityProviders(ctx)
			return err
		}},
		{"create", func(ctx context.Context, c *cloudflare.Client) error {
			_, err := c.CreateIdentityProvider(ctx, spec("grafana"))
			return err
		}},
	}
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, tt := range calls {
			t.Run(fmt.Sprintf("%s %d", tt.name, status), func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Location", strings.Replace(target.URL, "://", "://user:hunter2@", 1)+r.URL.Path+"?state=s3cr3t")
					w.WriteHeader(status)
				}))
				defer srv.Close()
				c := cloudflare.New(account, workflow.NewSecret("the-token"), srv.URL+"/client/v4", &http.Client{Timeout: 10 * time.Second})
				err := tt.call(t.Context(), c)
				reached.Range(func(k, v any) bool {
					t.Errorf("the redirect was followed: %v with body %q", k, v)
					return true
				})
				var re *workflow.RedirectError
				api := apiError(t, err)
				if !errors.As(err, &re) || re.Status != status || workflow.IsTransient(err) || !strings.Contains(err.Error(), "redirected to "+target.URL) {
					t.Errorf("err = %v (transient %v, status %d); want a permanent *workflow.RedirectError naming %s", err, workflow.IsTransient(err), api.Status, target.URL)
				}
				if s := err.Error(); strings.Contains(s, "s3cr3t") || strings.Contains(s, "hunter2") {
					t.Errorf("err = %q quotes the target's query or user info", s)
				}
				noSecret(t, err)
			})
		}
	}
}
