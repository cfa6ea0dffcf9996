package authentiktest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"net/http"
	"strings"
	"sync"
)

// sharedKey is the RSA key of certificates with a private key. One key per
// process keeps servers cheap to start; tests only need it to be RSA.
var sharedKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("authentiktest: generate RSA key: " + err.Error())
	}
	return k
})

func keyFingerprint(c *cert) string {
	var der []byte
	if c.key != nil {
		der, _ = x509.MarshalPKIXPublicKey(&c.key.PublicKey)
	} else {
		der = []byte(c.pk)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// handleOIDC serves the public endpoints Cloudflare Access uses, for
// applications that exist and have a provider.
func (s *Server) handleOIDC(r *http.Request) response {
	rest := strings.TrimPrefix(r.URL.Path, "/application/o/")
	switch rest {
	case "authorize/":
		return response{status: http.StatusOK, header: http.Header{"Content-Type": {"text/html"}}, body: []byte("<html><title>authentik</title></html>")}
	case "token/", "userinfo/", "introspect/", "revoke/", "device/":
		if r.Method != http.MethodPost && rest == "token/" {
			return detail(http.StatusMethodNotAllowed, "Method \""+r.Method+"\" not allowed.")
		}
		return jsonResponse(http.StatusBadRequest, map[string]string{"error": "invalid_request"})
	}
	slug, what, ok := strings.Cut(rest, "/")
	if !ok || (what != ".well-known/openid-configuration" && what != "jwks/") {
		return detail(http.StatusNotFound, "Not found.")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appBySlug(slug)
	if a == nil {
		return detail(http.StatusNotFound, "Not found.")
	}
	p := s.providerByPK(a.Provider)
	if p == nil {
		return detail(http.StatusNotFound, "Not found.")
	}
	var key *rsa.PrivateKey
	var kid string
	if c := s.certByPK(p.SigningKey); c != nil && c.key != nil {
		key, kid = c.key, keyFingerprint(c)[:32]
	}
	if what == "jwks/" {
		keys := []map[string]any{}
		if key != nil {
			keys = append(keys, map[string]any{
				"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
				"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
			})
		}
		doc := map[string]any{"keys": keys}
		if s.rewriteOIDC != nil {
			s.rewriteOIDC("jwks", doc)
		}
		return jsonResponse(http.StatusOK, doc)
	}

	// Without a signing key authentik signs with the client secret (HS256).
	alg := "HS256"
	if key != nil {
		alg = "RS256"
	}
	base := "https://" + r.Host + "/application/o/"
	var scopes []string
	for _, pk := range p.PropertyMappings {
		for _, m := range s.scopes {
			if m.pk == pk {
				scopes = append(scopes, m.scopeName)
			}
		}
	}
	doc := map[string]any{
		"issuer":                                   base + slug + "/",
		"authorization_endpoint":                   base + "authorize/",
		"token_endpoint":                           base + "token/",
		"userinfo_endpoint":                        base + "userinfo/",
		"end_session_endpoint":                     base + slug + "/end-session/",
		"introspection_endpoint":                   base + "introspect/",
		"revocation_endpoint":                      base + "revoke/",
		"device_authorization_endpoint":            base + "device/",
		"response_types_supported":                 []string{"code", "id_token", "id_token token", "code token", "code id_token", "code id_token token"},
		"response_modes_supported":                 []string{"query", "fragment", "form_post"},
		"jwks_uri":                                 base + slug + "/jwks/",
		"grant_types_supported":                    []string{"authorization_code", "refresh_token", "implicit", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:device_code"},
		"id_token_signing_alg_values_supported":    []string{alg},
		"id_token_encryption_alg_values_supported": []string{},
		"subject_types_supported":                  []string{"public"},
		"token_endpoint_auth_methods_supported":    []string{"client_secret_post", "client_secret_basic"},
		"scopes_supported":                         nonNil(scopes),
		"request_parameter_supported":              false,
		"claims_supported":                         []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "email_verified", "name", "given_name", "preferred_username", "nickname", "groups"},
		"claims_parameter_supported":               false,
		"code_challenge_methods_supported":         []string{"plain", "S256"},
	}
	if s.rewriteOIDC != nil {
		s.rewriteOIDC("discovery", doc)
	}
	return jsonResponse(http.StatusOK, doc)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
