package serve

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/dashboard"
)

// dashState is what the gateway's dashboard (the page at "/") observes beyond
// Status: the admission waits and the calls answered with an error, per team. Its
// zero value is ready; the dashboard itself is made on first use.
type dashState struct {
	once  sync.Once
	d     *dashboard.Dashboard
	waits dashboard.WaitHistograms

	mu   sync.Mutex
	errs map[string]*rateWindow // by team: calls answered with an error, last minute
}

// dashboard returns the gateway's dashboard, sampling g (see Gateway.RunDashboard).
func (g *Gateway) dashboard() *dashboard.Dashboard {
	g.dash.once.Do(func() {
		d, err := dashboard.New(dashboard.Config{Title: "clade serve", Now: g.now,
			Source: dashboard.SourceFunc(g.dashboardSample)})
		if err != nil {
			panic(err) // the Config above is always valid
		}
		g.dash.d = d
	})
	return g.dash.d
}

// RunDashboard samples the gateway into its dashboard's history every 2 s until
// ctx ends (Run does it while it serves); it returns nil.
func (g *Gateway) RunDashboard(ctx context.Context) error { return g.dashboard().Run(ctx) }

// serveDashboard serves the dashboard's page, series and assets.
func (g *Gateway) serveDashboard(w http.ResponseWriter, r *http.Request) {
	g.dashboard().ServeHTTP(w, r)
}

// wait records a Messages call's admission wait for the dashboard's quantiles.
func (s *dashState) wait(team string, d time.Duration) { s.waits.Observe(team, d) }

// answered counts a Messages call answered with an error (a 4xx but the client
// leaving, a 5xx, or a stream cut off) for the dashboard.
func (g *Gateway) answered(team string, code int) {
	if code != statusCut && (code < 400 || code == 499) {
		return
	}
	g.dash.mu.Lock()
	if g.dash.errs == nil {
		g.dash.errs = map[string]*rateWindow{}
	}
	w := g.dash.errs[team]
	if w == nil {
		w = &rateWindow{}
		g.dash.errs[team] = w
	}
	g.dash.mu.Unlock()
	w.add(g.now(), func(s *rateSlot) { s.req++ })
}

// dashboardSample is the dashboard's source: Status, the waits since the last
// sample and the errors of the last minute, per team.
func (g *Gateway) dashboardSample(ctx context.Context, now time.Time) dashboard.Sample {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st := g.Status(ctx)
	s := dashboard.Sample{Tier: st.Tier, InFlight: st.InFlight}
	for _, c := range st.Classes {
		s.Classes = append(s.Classes, dashboard.Class{Name: c.Class,
			Requests:     dashboard.Rate{PerMin: float64(c.RequestsPerMin), Limit: float64(c.LimitRPM)},
			InputTokens:  dashboard.Rate{PerMin: float64(c.InputTokensPerMin), Limit: float64(c.LimitITPM)},
			OutputTokens: dashboard.Rate{PerMin: float64(c.OutputTokensPerMin), Limit: float64(c.LimitOTPM)},
			Upstream429:  float64(c.Upstream429PerMin), Upstream529: float64(c.Upstream529PerMin),
			Paused: c.PausedUntil != nil})
	}
	waits := g.dash.waits.Take()
	teams := map[string]*dashboard.Team{}
	team := func(name string) *dashboard.Team {
		t := teams[name]
		if t == nil {
			t = &dashboard.Team{Name: name}
			teams[name] = t
		}
		return t
	}
	for name, n := range st.Queued {
		team(name).Queued = n
	}
	for name, q := range waits {
		t := team(name)
		p50, p99 := q.P50, q.P99
		t.Admitted, t.WaitP50, t.WaitP99 = q.N, &p50, &p99
	}
	g.dash.mu.Lock()
	for name, w := range g.dash.errs {
		team(name).ErrorsPerMin = float64(w.sum(now).req)
	}
	g.dash.mu.Unlock()
	for _, sh := range g.TeamShares() {
		t := team(sh.Team)
		t.Shares = append(t.Shares, dashboard.Share{Class: sh.Class, Share: sh.Share, Cap: sh.Cap, Borrowed: sh.Borrowed})
	}
	for _, t := range teams {
		s.Teams = append(s.Teams, *t)
	}
	sort.Slice(s.Teams, func(i, j int) bool { return s.Teams[i].Name < s.Teams[j].Name })
	for _, b := range st.Budgets {
		s.Budgets = append(s.Budgets, dashboard.Budget{Team: b.Team, Key: b.Key, Period: b.Period,
			LimitUSD: b.LimitUSD, SpentUSD: b.SpentUSD, HeldUSD: b.HeldUSD})
	}
	return s
}

// sampleDashboard runs RunDashboard until ctx ends or the returned stop is
// called; stop returns once the sampler has.
func (g *Gateway) sampleDashboard(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { g.RunDashboard(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}
