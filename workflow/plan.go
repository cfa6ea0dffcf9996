package workflow

import "slices"

// The settings below are the run's plan: the steps create exactly these,
// verify checks them, and the front end shows them to approvers, so each
// lives in one place.

// PlannedProvider is the authentik provider a run creates from its resolved
// parameters: a confidential client whose only redirect URI is Cloudflare's
// callback (strict), ID tokens signed by the signing key (RS256; without a
// key authentik signs HS256, which Cloudflare refuses) and carrying the
// scopes' claims.
func PlannedProvider(p Params) ProviderSpec {
	return ProviderSpec{
		Name:                   p.ProviderName,
		ClientID:               p.ClientID,
		ClientType:             "confidential",
		AuthorizationFlow:      p.AuthorizationFlowID,
		InvalidationFlow:       p.InvalidationFlowID,
		RedirectURIs:           []RedirectURI{{MatchingMode: "strict", URL: p.CallbackURL}},
		SigningKey:             p.SigningKeyID,
		PropertyMappings:       slices.Clone(p.ScopeMappingIDs),
		IncludeClaimsInIDToken: true,
	}
}

// PlannedApplication is the authentik application a run creates for its
// provider. Policy engine mode "any": with no policy bound, authentik lets
// any of its users sign in, and Cloudflare Access policies decide who
// reaches which application.
func PlannedApplication(p Params, providerID int) ApplicationSpec {
	return ApplicationSpec{Name: p.ApplicationName, Slug: p.ApplicationSlug, Provider: providerID, PolicyEngineMode: "any"}
}

// PlannedLoginMethod is the exact Cloudflare login method a run adds.
func PlannedLoginMethod(p Params) OIDCConfig {
	return OIDCConfig{
		ClientID:       p.ClientID,
		AuthURL:        p.AuthURL,
		TokenURL:       p.TokenURL,
		CertsURL:       p.CertsURL,
		Scopes:         []string{"openid", "email", "profile"},
		PKCEEnabled:    true,
		EmailClaimName: "email",
	}
}
