// Package workflow is ssobot's domain and engine: a run takes one
// "authentik as a Cloudflare Access login method" setup from request to a
// verified login method, through approval gates, surviving crashes and
// restarts.
//
// Execution is at least once; effects are exactly once. Each step writes its
// intent (attempt n and the natural key of what it will create) in one store
// transaction, calls the API with no transaction open, and writes the result
// in a second one. Neither authentik nor Cloudflare takes an idempotency key,
// so every step finds its object by a natural key before creating it: the
// provider by the client_id the run chose before the first call, the
// application by slug, the login method by name plus client_id. A crash
// between intent and result therefore repeats the lookup, never the create.
//
// Decisions are compare-and-set: the whole validation of a decision runs
// inside the store's write transaction, so of concurrent clicks one wins and
// the others are told who decided.
//
// The package imports no SDK, no Slack and no database: it owns the
// interfaces it consumes (Store, Authentik, Access, Endpoints, Notifier,
// Approvers, Clock, Observer), and adapters live in sub-packages.
package workflow
