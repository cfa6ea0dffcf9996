package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssobot/ssobot/workflow"
)

// runCounter counts runs by state; the bbolt store implements it.
type runCounter interface {
	CountByState(ctx context.Context) (map[workflow.State]int, error)
}

// Metrics holds the binary's Prometheus metrics in its own registry. It is
// the engine's workflow.Observer and wraps the HTTP clients of the three
// systems.
type Metrics struct {
	reg          *prometheus.Registry
	stepDuration *prometheus.HistogramVec
	stepFailures *prometheus.CounterVec
	decisions    *prometheus.CounterVec
	runsFinished *prometheus.CounterVec
	apiRequests  *prometheus.CounterVec
	apiDuration  *prometheus.HistogramVec
	slackErrors  *prometheus.CounterVec
}

var _ workflow.Observer = (*Metrics)(nil)

// NewMetrics registers the metrics; runs is read at every scrape.
func NewMetrics(runs runCounter) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ssobot_step_duration_seconds",
			Help:    "Duration of step attempts, by step.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"step"}),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssobot_step_failures_total",
			Help: "Failed step attempts, by step.",
		}, []string{"step"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssobot_decisions_total",
			Help: "Approval decisions, by gate, decision and whether they were accepted.",
		}, []string{"gate", "decision", "accepted"}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssobot_runs_finished_total",
			Help: "Runs that reached an end state since start, by state.",
		}, []string{"state"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssobot_api_requests_total",
			Help: "Requests to Slack, authentik and Cloudflare, by system, method and HTTP status (\"error\" when no response came).",
		}, []string{"system", "method", "status"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ssobot_api_request_duration_seconds",
			Help:    "Latency of requests to Slack, authentik and Cloudflare until the response headers, by system and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"system", "method"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssobot_slack_errors_total",
			Help: "Slack Web API calls answered {\"ok\":false} (with HTTP 200, so not in ssobot_api_requests_total's status), by method and Slack's error code.",
		}, []string{"method", "error"}),
	}
	// Series for every step exist from the start, so rate() and alerts work
	// before the first failure.
	for _, s := range workflow.Plan {
		if s.Kind == workflow.KindAction {
			m.stepDuration.WithLabelValues(string(s.Name))
			m.stepFailures.WithLabelValues(string(s.Name))
		}
	}
	m.reg.MustRegister(
		m.stepDuration, m.stepFailures, m.decisions, m.runsFinished, m.apiRequests, m.apiDuration, m.slackErrors,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ssobot_build_info",
			Help:        "Always 1; the version label describes the binary.",
			ConstLabels: prometheus.Labels{"version": versionLabel()},
		}, func() float64 { return 1 }),
	)
	if runs != nil {
		m.reg.MustRegister(&runsCollector{runs: runs})
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// StepFinished implements workflow.Observer.
func (m *Metrics) StepFinished(step workflow.StepName, d time.Duration, err error) {
	m.stepDuration.WithLabelValues(string(step)).Observe(d.Seconds())
	if err != nil {
		m.stepFailures.WithLabelValues(string(step)).Inc()
	}
}

// DecisionMade implements workflow.Observer.
func (m *Metrics) DecisionMade(gate workflow.StepName, d workflow.Decision, accepted bool) {
	m.decisions.WithLabelValues(string(gate), string(d), strconv.FormatBool(accepted)).Inc()
}

// RunFinished implements workflow.Observer.
func (m *Metrics) RunFinished(state workflow.State) {
	m.runsFinished.WithLabelValues(string(state)).Inc()
}

// runsCollector reads the number of runs in each state from the store at
// scrape time, so the gauge is right after a restart.
type runsCollector struct{ runs runCounter }

var runsDesc = prometheus.NewDesc("ssobot_runs", "Runs in the database, by state.", []string{"state"}, nil)

func (c *runsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- runsDesc }

func (c *runsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.runs.CountByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(runsDesc, err)
		return
	}
	for _, s := range workflow.States {
		ch <- prometheus.MustNewConstMetric(runsDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// Systems measured by Transport.
const (
	systemSlack      = "slack"
	systemAuthentik  = "authentik"
	systemCloudflare = "cloudflare"
)

// Transport wraps next (http.DefaultTransport when nil) to count and time
// the requests to one system.
func (m *Metrics) Transport(system string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &meteredTransport{next: next, system: system, m: m}
}

type meteredTransport struct {
	next   http.RoundTripper
	system string
	m      *Metrics
}

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	method := routeLabel(t.system, req.Method, req.URL.Path)
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.apiDuration.WithLabelValues(t.system, method).Observe(time.Since(start).Seconds())
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.m.apiRequests.WithLabelValues(t.system, method, status).Inc()
	if err == nil && t.system == systemSlack && resp.StatusCode == http.StatusOK {
		if code := slackErrorCode(resp); code != "" {
			t.m.slackErrors.WithLabelValues(method, code).Inc()
		}
	}
	return resp, err
}

// maxSlackInspect bounds the Slack answers read for their error code; the
// calls ssobot makes answer a few kilobytes.
const maxSlackInspect = 1 << 20

// slackErrorCode reads a Slack Web API answer for {"ok":false,"error":…}
// and gives the body back whole to the caller. Slack reports its errors
// (not_in_channel, invalid_auth, restricted_action, …) with HTTP 200.
func slackErrorCode(resp *http.Response) string {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || resp.ContentLength > maxSlackInspect {
		return ""
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, maxSlackInspect+1))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil || len(head) > maxSlackInspect {
		return ""
	}
	var a struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(head, &a) != nil || a.OK == nil || *a.OK {
		return ""
	}
	if !routeWordPattern.MatchString(a.Error) {
		return "other" // labels stay bounded
	}
	return a.Error
}

var (
	slackMethodPattern = regexp.MustCompile(`^[a-z]+(\.[a-zA-Z]+)+$`)
	routeWordPattern   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	hex32Pattern       = regexp.MustCompile(`^[0-9a-f]{32}$`)
	uuidPattern        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// placeholders name the path segment that follows a collection whose items
// are addressed by something other than a number.
var placeholders = map[string]string{
	"accounts":     "{account_id}",
	"zones":        "{zone_id}",
	"applications": "{slug}",
	"instances":    "{slug}",
}

// routeLabel turns a request into a bounded label: the Slack API method
// ("chat.postMessage"), or the HTTP method and the API path with IDs, slugs
// and the query removed ("GET /core/applications/{slug}/").
func routeLabel(system, method, path string) string {
	if system == systemSlack {
		name := path[strings.LastIndexByte(path, '/')+1:]
		if slackMethodPattern.MatchString(name) && len(name) <= 64 {
			return name
		}
		return "other"
	}
	// Drop the base path: authentik's /api/v3, Cloudflare's /client/v4 (fakes
	// and proxies may mount them under other prefixes).
	for _, base := range []string{"/api/v3/", "/client/v4/"} {
		if i := strings.Index(path, base); i >= 0 {
			path = path[i+len(base)-1:]
			break
		}
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) > 8 {
		return method + " other"
	}
	prev := ""
	for i, s := range segs {
		switch {
		case placeholders[prev] != "":
			segs[i] = placeholders[prev]
		case s == "":
		case isNumber(s), uuidPattern.MatchString(s), hex32Pattern.MatchString(s):
			segs[i] = "{id}"
		case !routeWordPattern.MatchString(s):
			segs[i] = "{param}"
		}
		prev = s
	}
	route := "/" + strings.Join(segs, "/")
	if strings.HasSuffix(path, "/") && route != "/" {
		route += "/"
	}
	return method + " " + route
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func versionLabel() string {
	v := Version()
	if f := strings.Fields(v); len(f) > 1 {
		return f[1]
	}
	return v
}
