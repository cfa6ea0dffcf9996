package workflow

import "context"

func newEngine(cfg Config) (*Engine, error)                            { return &Engine{cfg: cfg}, nil }
func (e *Engine) run(ctx context.Context) error                        { return errNotImplemented }
func (e *Engine) isReady() bool                                        { return false }
func (e *Engine) validate(req Request) (Request, error)                { return req, errNotImplemented }
func (e *Engine) start(ctx context.Context, req Request) (*Run, error) { return nil, errNotImplemented }
func (e *Engine) decide(ctx context.Context, d DecisionRequest) (*Run, error) {
	return nil, errNotImplemented
}
func (e *Engine) cancel(ctx context.Context, id int64, user, reason string) (*Run, error) {
	return nil, errNotImplemented
}
func (e *Engine) retry(ctx context.Context, id int64, user string) (*Run, error) {
	return nil, errNotImplemented
}
func (e *Engine) setMessageRef(ctx context.Context, id int64, ref string) (*Run, error) {
	return nil, errNotImplemented
}
