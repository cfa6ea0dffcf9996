package cloudflaretest_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

const account = "023e105f4ecef8ad9ca31a8372d0c353"

type envelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Result     json.RawMessage `json:"result"`
	ResultInfo struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		Count      int `json:"count"`
		TotalCount int `json:"total_count"`
	} `json:"result_info"`
}

func newServer(t *testing.T, opts ...cloudflaretest.Option) *cloudflaretest.Server {
	t.Helper()
	srv := cloudflaretest.New(account, opts...)
	t.Cleanup(srv.Close)
	return srv
}

// noContractErrors fails the test on contract violations (only for tests
// that send valid requests).
func noContractErrors(t *testing.T, srv *cloudflaretest.Server) {
	t.Helper()
	if !srv.Validating() {
		t.Log("contracts not found: not validated")
	}
	for _, err := range srv.ContractErrors() {
		t.Errorf("contract: %v", err)
	}
}

func do(t *testing.T, srv *cloudflaretest.Server, method, path, body string) (int, envelope, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.Token())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, raw, err)
	}
	return res.StatusCode, env, string(raw)
}

const idps = "/accounts/" + account + "/access/identity_providers"

func oidcBody(name, secret string) string {
	b, _ := json.Marshal(map[string]any{"name": name, "type": "oidc", "config": map[string]any{
		"client_id": "cid", "client_secret": secret, "auth_url": "https://a/", "token_url": "https://t/", "certs_url": "https://c/",
		"scopes": []string{"openid"}, "pkce_enabled": true,
	}})
	return string(b)
}

func TestLifecycle(t *testing.T) {
	srv := newServer(t)
	status, env, raw := do(t, srv, http.MethodPost, idps, oidcBody("grafana", "first-secret"))
	if status != http.StatusCreated || !env.Success {
		t.Fatalf("create: %d %s", status, raw)
	}
	if strings.Contains(raw, "first-secret") || !strings.Contains(raw, cloudflaretest.MaskedSecret) {
		t.Errorf("create answer does not mask the secret: %s", raw)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(env.Result, &created); err != nil || created.ID == "" {
		t.Fatalf("no id in %s", env.Result)
	}

	status, _, raw = do(t, srv, http.MethodGet, idps+"/"+created.ID, "")
	if status != http.StatusOK || strings.Contains(raw, "first-secret") {
		t.Errorf("get: %d %s", status, raw)
	}

	status, _, raw = do(t, srv, http.MethodPut, idps+"/"+created.ID, oidcBody("grafana-2", "second-secret"))
	if status != http.StatusOK {
		t.Fatalf("update: %d %s", status, raw)
	}
	got := srv.IdentityProviders()
	if len(got) != 1 || got[0].Name != "grafana-2" || got[0].Config.ClientSecret != "second-secret" || got[0].ID != created.ID {
		t.Errorf("after update: %+v", got)
	}

	status, _, raw = do(t, srv, http.MethodDelete, idps+"/"+created.ID, "")
	if status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", status, raw)
	}
	if n := len(srv.IdentityProviders()); n != 0 {
		t.Errorf("%d login methods after delete", n)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		status, env, _ = do(t, srv, method, idps+"/"+created.ID, "")
		if status != http.StatusNotFound || env.Success || len(env.Errors) == 0 || env.Errors[0].Message == "" {
			t.Errorf("%s after delete: %d %+v", method, status, env)
		}
	}
	status, _, _ = do(t, srv, http.MethodPut, idps+"/"+created.ID, oidcBody("x", "y"))
	if status != http.StatusNotFound {
		t.Errorf("PUT after delete: %d", status)
	}
	noContractErrors(t, srv)
}

func TestInvalidBodies(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"no name", `{"type":"oidc","config":{}}`, "name"},
		{"empty name", `{"name":"","type":"oidc","config":{}}`, "name"},
		{"no type", `{"name":"x","config":{}}`, "type"},
		{"no config", `{"name":"x","type":"oidc"}`, "config"},
		{"no client_id", `{"name":"x","type":"oidc","config":{"client_secret":"s","auth_url":"a","token_url":"t","certs_url":"c"}}`, "client_id"},
		{"no client_secret", `{"name":"x","type":"oidc","config":{"client_id":"i","auth_url":"a","token_url":"t","certs_url":"c"}}`, "client_secret"},
		{"no certs_url", `{"name":"x","type":"oidc","config":{"client_id":"i","client_secret":"s","auth_url":"a","token_url":"t"}}`, "certs_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			status, env, raw := do(t, srv, http.MethodPost, idps, tt.body)
			if status != http.StatusBadRequest || len(env.Errors) == 0 || env.Errors[0].Code != cloudflaretest.CodeInvalidRequest {
				t.Fatalf("%d %s, want 400 code 12130", status, raw)
			}
			if msg := env.Errors[0].Message; !strings.HasPrefix(msg, "access.api.error.invalid_request: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not name %q", msg, tt.want)
			}
			if n := len(srv.IdentityProviders()); n != 0 {
				t.Errorf("an invalid create was stored")
			}
		})
	}
}

func TestPaging(t *testing.T) {
	srv := newServer(t, cloudflaretest.WithMaxPerPage(3))
	for range 7 {
		srv.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "pin", Type: "onetimepin"})
	}
	tests := []struct {
		query     string
		wantCount int
		wantPer   int
	}{
		{"", 3, 3},
		{"?page=1&per_page=2", 2, 2},
		{"?page=3&per_page=3", 1, 3},
		{"?page=4&per_page=3", 0, 3},
		{"?page=1&per_page=100", 3, 3},
	}
	for _, tt := range tests {
		status, env, raw := do(t, srv, http.MethodGet, idps+tt.query, "")
		var items []json.RawMessage
		if err := json.Unmarshal(env.Result, &items); err != nil {
			t.Fatalf("%s: %v in %s", tt.query, err, raw)
		}
		if status != 200 || len(items) != tt.wantCount || env.ResultInfo.Count != tt.wantCount ||
			env.ResultInfo.PerPage != tt.wantPer || env.ResultInfo.TotalCount != 7 {
			t.Errorf("%s: %d items, %+v", tt.query, len(items), env.ResultInfo)
		}
	}
	noContractErrors(t, srv)
}

func TestAuth(t *testing.T) {
	srv := newServer(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/accounts/"+account+"/access/organizations", nil)
	req.Header.Set("Authorization", "Bearer nope")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("wrong token: %d, want 403", res.StatusCode)
	}

	status, env, _ := do(t, srv, http.MethodGet, "/accounts/ffffffffffffffffffffffffffffffff/access/organizations", "")
	if status != http.StatusForbidden || env.Errors[0].Code != cloudflaretest.CodeAuth {
		t.Errorf("other account: %d %+v", status, env)
	}

	srv.DenyToken()
	for _, path := range []string{"/user/tokens/verify", "/accounts/" + account + "/access/organizations", idps} {
		status, env, _ := do(t, srv, http.MethodGet, path, "")
		if status != http.StatusForbidden || env.Errors[0].Code != cloudflaretest.CodeAuth {
			t.Errorf("%s with a denied token: %d %+v", path, status, env)
		}
	}
}

func TestContractViolationRecorded(t *testing.T) {
	srv := newServer(t)
	if !srv.Validating() {
		t.Skip("contracts not found")
	}
	// The contract caps identity provider IDs at 36 characters.
	status, _, _ := do(t, srv, http.MethodGet, idps+"/"+strings.Repeat("a", 40), "")
	if status != http.StatusBadRequest {
		t.Errorf("status %d, want 400", status)
	}
	if len(srv.ContractErrors()) != 1 {
		t.Errorf("contract errors: %v, want 1", srv.ContractErrors())
	}
}

func TestWithoutContract(t *testing.T) {
	srv := newServer(t, cloudflaretest.WithoutContract())
	if srv.Validating() {
		t.Fatal("validating although asked not to")
	}
	status, _, _ := do(t, srv, http.MethodGet, idps+"/"+strings.Repeat("a", 40), "")
	if status != http.StatusNotFound {
		t.Errorf("status %d, want 404", status)
	}
}

func TestFaultTimes(t *testing.T) {
	srv := newServer(t)
	srv.AddFault(cloudflaretest.Fault{Method: http.MethodGet, PathContains: "organizations", Kind: cloudflaretest.FaultStatus, Status: 503, Times: 2})
	org := "/accounts/" + account + "/access/organizations"
	var got []int
	for range 3 {
		status, _, _ := do(t, srv, http.MethodGet, org, "")
		got = append(got, status)
	}
	if want := []int{503, 503, 200}; !equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if status, _, _ := do(t, srv, http.MethodGet, idps, ""); status != 200 {
		t.Errorf("a fault for organizations hit identity_providers: %d", status)
	}
	if n := srv.Calls(http.MethodGet, "organizations"); n != 3 {
		t.Errorf("Calls = %d, want 3", n)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFaultRateReproducible: the same seed fails the same calls.
func TestFaultRateReproducible(t *testing.T) {
	run := func() []int {
		srv := newServer(t)
		srv.SetFaultRate(0.5, 7, cloudflaretest.FaultStatus)
		var out []int
		for range 30 {
			status, _, _ := do(t, srv, http.MethodGet, idps, "")
			out = append(out, status)
		}
		return out
	}
	a, b := run(), run()
	if !equal(a, b) {
		t.Errorf("seed 7 gave %v, then %v", a, b)
	}
	var ok, failed int
	for _, s := range a {
		if s == 200 {
			ok++
		} else {
			failed++
		}
	}
	if ok == 0 || failed == 0 {
		t.Errorf("statuses %v: want both successes and faults", a)
	}
}

func TestMalformed(t *testing.T) {
	srv := newServer(t)
	srv.AddFault(cloudflaretest.Fault{Kind: cloudflaretest.FaultMalformed})
	res, err := http.Get(srv.URL() + idps)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v any
	if err := json.NewDecoder(res.Body).Decode(&v); res.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("status %d, decode error %v: want 200 with truncated JSON", res.StatusCode, err)
	}
}

// TestCloseReleasesHeldRequests: a request held by a timeout fault ends
// when the server closes, even if its client has no deadline.
func TestCloseReleasesHeldRequests(t *testing.T) {
	held := make(chan string, 1)
	srv := cloudflaretest.New(account, cloudflaretest.WithOnHold(func(method, path string) { held <- method + " " + path }))
	srv.AddFault(cloudflaretest.Fault{Kind: cloudflaretest.FaultTimeout})
	done := make(chan error, 1)
	go func() {
		res, err := http.Post(srv.URL()+idps, "application/json", strings.NewReader(oidcBody("x", "y")))
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	select {
	case got := <-held:
		if !strings.HasPrefix(got, "POST ") || !strings.HasSuffix(got, "/identity_providers") {
			t.Errorf("held %q, want the POST to identity_providers", got)
		}
	case err := <-done:
		t.Fatalf("the request ended before it was held: %v", err)
	}
	srv.Close()
	// Close must release the held request: a hang here is the failure, which
	// go test -timeout reports with the stacks.
	if err := <-done; err == nil {
		t.Error("the held request got an answer") // a timeout never answers
	}
}

func TestRateLimitBlocksEverything(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := newServer(t, cloudflaretest.WithRateLimitBlock(time.Minute))
	srv.SetRateLimit(2, time.Second, clock)
	var got []int
	for range 4 {
		status, _, _ := do(t, srv, http.MethodGet, idps, "")
		got = append(got, status)
	}
	if want := []int{200, 200, 429, 429}; !equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

// TestRawConfig: a seeded login method's raw config is answered as it is,
// contract-valid although ssobot cannot read it, until a PUT replaces it.
func TestRawConfig(t *testing.T) {
	srv := newServer(t)
	raw := `{"client_id":"x","scopes":"openid email"}`
	srv.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "odd", Type: "oidc", RawConfig: json.RawMessage(raw)})
	id := srv.IdentityProviders()[0].ID
	for _, path := range []string{idps, idps + "/" + id} {
		status, _, body := do(t, srv, http.MethodGet, path, "")
		if status != http.StatusOK || !strings.Contains(body, `"config":`+raw) {
			t.Errorf("GET %s: %d %s, want the raw config", path, status, body)
		}
	}
	if status, _, body := do(t, srv, http.MethodPut, idps+"/"+id, oidcBody("odd", "s")); status != http.StatusOK || strings.Contains(body, "openid email") {
		t.Errorf("PUT: %d %s, want the new config", status, body)
	}
	noContractErrors(t, srv)
}
