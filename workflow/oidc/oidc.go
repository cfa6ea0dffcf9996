// Package oidc checks authentik's public OpenID endpoints the way Cloudflare
// will use them: over HTTPS, with certificates the system trusts.
package oidc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// Checker implements workflow.Endpoints.
type Checker struct {
	client *http.Client
}

// New returns a checker using the given client, or one that trusts the
// system roots (SSL_CERT_FILE and SSL_CERT_DIR are honoured by crypto/x509).
func New(client *http.Client) *Checker {
	if client == nil {
		client = &http.Client{Timeout: Timeout}
	}
	return &Checker{client: client}
}

// Timeout bounds each request of the checker's own clients.
const Timeout = 15 * time.Second

// WithRoots returns an HTTP client that trusts only the given roots: for
// tests, whose authentik has a generated certificate.
func WithRoots(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: Timeout, Transport: t}
}

const maxBody = 1 << 20

func (c *Checker) get(ctx context.Context, op, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, &workflow.APIError{System: "https", Op: op, Permanent: true, Message: fmt.Sprintf("%q is not an https URL", rawURL)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &workflow.APIError{System: "https", Op: op, Permanent: true, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, transportError(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &workflow.APIError{System: "https", Op: op, Status: 0, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		e := &workflow.APIError{System: "https", Op: op, Status: resp.StatusCode}
		if resp.StatusCode == http.StatusNotFound {
			e.Message = rawURL + " was not found"
		}
		return nil, e
	}
	return body, nil
}

// transportError keeps certificate failures permanent (no retry makes an
// untrusted certificate trusted) and the rest transient.
func transportError(op string, err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &verify):
		return &workflow.APIError{System: "https", Op: op, Permanent: true, Message: "the certificate is not signed by an authority the system trusts", Err: err}
	case errors.As(err, &hostname):
		return &workflow.APIError{System: "https", Op: op, Permanent: true, Message: "the certificate does not name this host", Err: err}
	case errors.As(err, &invalid):
		return &workflow.APIError{System: "https", Op: op, Permanent: true, Message: "the certificate is invalid (expired or not yet valid)", Err: err}
	}
	return &workflow.APIError{System: "https", Op: op, Err: err}
}

// CheckTLS fetches the URL; any HTTP answer over verified TLS passes.
func (c *Checker) CheckTLS(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return &workflow.APIError{System: "https", Op: "check TLS", Permanent: true, Message: fmt.Sprintf("%q is not an https URL", rawURL)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, rawURL, nil)
	if err != nil {
		return &workflow.APIError{System: "https", Op: "check TLS", Permanent: true, Err: err}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return transportError("check TLS", err)
	}
	resp.Body.Close()
	if resp.TLS == nil {
		return &workflow.APIError{System: "https", Op: "check TLS", Permanent: true, Message: "the answer did not come over TLS"}
	}
	return nil
}

// Discovery fetches and decodes an OpenID discovery document.
func (c *Checker) Discovery(ctx context.Context, rawURL string) (workflow.Discovery, error) {
	body, err := c.get(ctx, "fetch discovery document", rawURL)
	if err != nil {
		return workflow.Discovery{}, err
	}
	var doc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		JWKSURI               string   `json:"jwks_uri"`
		SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return workflow.Discovery{}, &workflow.APIError{System: "https", Op: "decode discovery document", Err: err}
	}
	return workflow.Discovery(doc), nil
}

// JWKS fetches and decodes a JSON Web Key Set.
func (c *Checker) JWKS(ctx context.Context, rawURL string) (workflow.JWKS, error) {
	body, err := c.get(ctx, "fetch JWKS", rawURL)
	if err != nil {
		return workflow.JWKS{}, err
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			KTY string `json:"kty"`
			Alg string `json:"alg"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return workflow.JWKS{}, &workflow.APIError{System: "https", Op: "decode JWKS", Err: err}
	}
	out := workflow.JWKS{Keys: make([]workflow.JWK, 0, len(set.Keys))}
	for _, k := range set.Keys {
		out.Keys = append(out.Keys, workflow.JWK(k))
	}
	return out, nil
}
