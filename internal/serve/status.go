package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// Status is the JSON of GET /_clade/status: this gateway's view of the
// organisation's limits and of its own queue.
type Status struct {
	At            time.Time `json:"at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Tier          string    `json:"tier"`
	// InFlight counts calls holding a concurrency slot of this gateway's limiter.
	InFlight int           `json:"in_flight"`
	Classes  []ClassStatus `json:"classes"`
	// Queued is the number of Messages calls waiting for admission, by team.
	Queued map[string]int `json:"queued"`
	// Budgets are the teams' and keys' USD budgets in their current periods.
	Budgets []BudgetStatus `json:"budgets,omitempty"`
}

// ClassStatus is one model class: what this gateway relayed in the last minute
// against the class's limits, and the shared buckets' levels.
type ClassStatus struct {
	Class string `json:"class"`
	// Last 60 seconds through this gateway: requests and tokens as the limits count
	// them (input: uncached input and cache writes), and upstream refusals.
	RequestsPerMin     int64 `json:"requests_per_min"`
	InputTokensPerMin  int64 `json:"input_tokens_per_min"`
	OutputTokensPerMin int64 `json:"output_tokens_per_min"`
	Upstream429PerMin  int64 `json:"upstream_429_per_min"`
	Upstream529PerMin  int64 `json:"upstream_529_per_min"`
	// Limits per minute in force, and the buckets' current levels (shared by every
	// gateway on the same backend).
	LimitRPM         int64      `json:"limit_rpm"`
	LimitITPM        int64      `json:"limit_itpm"`
	LimitOTPM        int64      `json:"limit_otpm"`
	RequestsLeft     float64    `json:"requests_available"`
	InputTokensLeft  float64    `json:"input_tokens_available"`
	OutputTokensLeft float64    `json:"output_tokens_available"`
	PausedUntil      *time.Time `json:"paused_until,omitempty"`
	Concurrency      int        `json:"concurrency_limit"`
}

// Status returns the gateway's status now.
func (g *Gateway) Status(ctx context.Context) Status {
	now := g.now()
	st := Status{At: now.UTC(), UptimeSeconds: now.Sub(g.started).Seconds(), Queued: map[string]int{}}
	for _, t := range g.cfg.Keys.Teams() {
		st.Queued[t.Name] = 0
	}
	g.mu.Lock()
	queues := make([]*fairQueue, 0, len(g.queues))
	for _, q := range g.queues {
		queues = append(queues, q)
	}
	g.mu.Unlock()
	for _, q := range queues {
		q.depths(st.Queued)
	}
	snap, err := g.lim.Snapshot(ctx)
	if err != nil {
		g.log.Warn("limiter snapshot", "error", err)
	}
	st.Tier, st.InFlight = snap.Tier, snap.InFlight
	for _, cs := range snap.Classes {
		w := g.window(cs.Class).sum(now)
		c := ClassStatus{
			Class: cs.Class, RequestsPerMin: w.req, InputTokensPerMin: w.in, OutputTokensPerMin: w.out,
			Upstream429PerMin: w.throttled, Upstream529PerMin: w.overloaded,
			LimitRPM: cs.Requests.Limit, LimitITPM: cs.InputTokens.Limit, LimitOTPM: cs.OutputTokens.Limit,
			RequestsLeft: cs.Requests.Level, InputTokensLeft: cs.InputTokens.Level, OutputTokensLeft: cs.OutputTokens.Level,
			Concurrency: int(cs.Concurrency.Limit),
		}
		if cs.Paused(now) {
			p := cs.PausedUntil.UTC()
			c.PausedUntil = &p
		}
		st.Classes = append(st.Classes, c)
	}
	sort.Slice(st.Classes, func(i, j int) bool { return st.Classes[i].Class < st.Classes[j].Class })
	budgets, err := g.budgets.snapshot(ctx, g.cfg.Keys)
	if err != nil {
		g.log.Warn("read spend for status", "error", err)
	}
	st.Budgets = budgets
	return st
}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(g.Status(r.Context()))
}

// handleIndex serves the dashboard's page (see dashboard.go and package
// dashboard): charts of the gateway's samples, polled from the dashboard's series.
func (g *Gateway) handleIndex(w http.ResponseWriter, r *http.Request) {
	g.serveDashboard(w, r)
}
