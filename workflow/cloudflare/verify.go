package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ssobot/ssobot/workflow"
)

// maxBody bounds a token verification answer.
const maxBody = 1 << 20

// codeBadHeaders is Cloudflare's error for an Authorization header it
// cannot read (400, with 6111 in its error chain).
const codeBadHeaders = 6003

// VerifyToken checks at start-up that the token is valid and active. A
// user-owned token is checked at /user/tokens/verify, an account-owned one
// only answers at /accounts/{id}/tokens/verify, so a refusal of the first is
// tried on the second. It is a plain request: the SDK's user package would
// link accounts, tenants and organizations for one GET.
func (c *Client) VerifyToken(ctx context.Context) error {
	err := c.verify(ctx, "user/tokens/verify")
	var api *workflow.APIError
	if err == nil || !errors.As(err, &api) || api.Transient() {
		return err
	}
	if err2 := c.verify(ctx, "accounts/"+url.PathEscape(c.accountID)+"/tokens/verify"); err2 == nil {
		return nil
	}
	return err
}

func (c *Client) verify(ctx context.Context, path string) error {
	const op = "verify token"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return fmt.Errorf("cloudflare: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	res, err := c.httpClient.Do(req)
	if err != nil {
		return &workflow.APIError{System: system, Op: op, Err: err, Permanent: redirected(err)}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return &workflow.APIError{System: system, Op: op, Err: err}
	}
	x := exchange{status: res.StatusCode, header: res.Header, body: body}
	if res.StatusCode >= 300 {
		err := x.error(op, nil)
		// Verifying needs no permission: a refusal is of the token itself,
		// not of what it may do. Only with Cloudflare's envelope (a code):
		// without one, a proxy answered.
		var api *workflow.APIError
		switch {
		case !errors.As(err, &api) || api.Code == 0:
		case api.Status == http.StatusUnauthorized || api.Status == http.StatusForbidden:
			api.Message = strings.TrimSuffix(api.Message, ": "+permissionHint) + ": Cloudflare does not accept the token itself (mistyped, expired, revoked or limited to other IP addresses): create an API token and set CLOUDFLARE_API_TOKEN"
		case api.Status == http.StatusBadRequest && api.Code == codeBadHeaders:
			api.Message += ": Cloudflare cannot read the token (a stray space, quote or line break in CLOUDFLARE_API_TOKEN?)"
		}
		return err
	}
	var env struct {
		Success bool `json:"success"`
		Result  struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return malformed(op, res.StatusCode, err)
	}
	switch {
	case !env.Success || env.Result.Status == "":
		// Not Cloudflare's answer to a verification: another server at the
		// base URL. It says nothing of the token.
		return &workflow.APIError{System: system, Op: op, Err: fmt.Errorf("malformed response (HTTP %d): no token status", res.StatusCode)}
	case env.Result.Status != "active":
		// Permanent: a disabled or expired token does not heal by waiting.
		return fmt.Errorf("cloudflare: %s: %w", op, &TokenStatusError{Status: env.Result.Status})
	}
	return nil
}

// TokenStatusError is Cloudflare's answer that the token is not active:
// disabled or expired.
type TokenStatusError struct{ Status string }

func (e *TokenStatusError) Error() string {
	return fmt.Sprintf("token status is %q, want \"active\"", e.Status)
}
