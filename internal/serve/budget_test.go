package serve_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/spend"
)

const researchKey = "ck-research-0001"

// budgetKeys gives team research a daily budget of usd, and key alice (team ops)
// one of its own.
func budgetKeys(usd string) string {
	return "teams:\n  research: {budget: {day: " + usd + ", month: 2000}}\nkeys:\n  " + researchKey + ": research\n" +
		"  ck-ops-alice-01: {team: ops, label: alice, budget: {week: " + usd + "}}\n"
}

func openSpend(t *testing.T, dsn string) *jobs.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return jobstest.Open(t, ctx, dsn)
}

// counted is the SDK (v2, its default retries on) with a middleware counting its
// attempts: an SDK that retried a refusal would show more than one.
func counted(url, key string, n *atomic.Int64) *anthropic.Client {
	c := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(url), option.WithAPIKey(key),
		option.WithMaxRetries(3),
		option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			n.Add(1)
			return next(r)
		}))
	return &c
}

// spendUntilRefused makes calls through c until one is refused; it returns the
// refusal and how many calls were answered before it.
func spendUntilRefused(t *testing.T, c anthropic.Client) (*anthropic.Error, int) {
	t.Helper()
	for i := range 50 {
		_, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 100, "Tell me about budgets"))
		if err == nil {
			continue
		}
		var ae *anthropic.Error
		if !errors.As(err, &ae) {
			t.Fatalf("call %d: error = %v, want an API error", i, err)
		}
		return ae, i
	}
	t.Fatal("50 calls, none refused: the budget was never reached")
	return nil, 0
}

// checkRefusal checks a budget refusal: 402 billing_error naming what ran out and
// when it resets, with a request-id, sent once by the SDK.
func checkRefusal(t *testing.T, ae *anthropic.Error, attempts int64, what string) {
	t.Helper()
	tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
	body := ae.RawJSON()
	if ae.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, `"billing_error"`) ||
		!strings.Contains(body, what+": its daily budget of $") || !strings.Contains(body, "it resets at "+tomorrow) {
		t.Errorf("refusal = %d %s, want 402 billing_error for %s resetting at %s", ae.StatusCode, body, what, tomorrow)
	}
	if !strings.HasPrefix(ae.RequestID, "req_clade_") {
		t.Errorf("refusal request-id = %q, want the gateway's own", ae.RequestID)
	}
	if attempts != 1 {
		t.Errorf("the SDK sent the refused call %d times, want once (402 is not retried)", attempts)
	}
	if strings.Contains(body, researchKey) || strings.Contains(body, orgKey) {
		t.Errorf("refusal %s quotes a key", body)
	}
}

// TestServeBudgetRefusesAndSurvivesRestart: calls of team research are answered
// until its daily budget is reached, then refused with 402 billing_error, which the
// SDK raises without retrying and which never reaches the API; a gateway started
// again on the same SQLite file refuses the team's first call (the spend is
// durable); another team is not refused.
func TestServeBudgetRefusesAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	dsn := jobstest.SQLite().NewDSN(t)
	keys := budgetKeys("0.002")
	gw := startGateway(t, setup{keys: keys, spend: openSpend(t, dsn)})
	ae, answered := spendUntilRefused(t, v2(gw.URL, researchKey))
	_ = ae
	if answered == 0 {
		t.Fatal("the first call was refused: the budget was not spent by calls")
	}
	upstream := gw.rec.count(200)
	var n atomic.Int64
	_, err := counted(gw.URL, researchKey, &n).Messages.New(context.Background(), hello("claude-haiku-4-5", 100, "again"))
	if !errors.As(err, &ae) {
		t.Fatalf("call after the budget = %v, want a refusal", err)
	}
	checkRefusal(t, ae, n.Load(), "team research")
	if got := gw.rec.count(200); got != upstream || upstream != answered {
		t.Errorf("upstream answered %d calls (%d before the refusals), want %d: refusals must not reach the API", got, upstream, answered)
	}
	st := gw.G.Status(context.Background())
	var day *serve.BudgetStatus
	for i, b := range st.Budgets {
		if b.Team == "research" && b.Key == "" && b.Period == "day" {
			day = &st.Budgets[i]
		}
	}
	if day == nil || day.SpentUSD <= 0 || day.LimitUSD != 0.002 || day.HeldUSD != 0 {
		t.Errorf("status budgets = %+v, want research's day with spend, limit 0.002 and nothing held", st.Budgets)
	}

	gw2 := startGateway(t, setup{keys: keys, spend: openSpend(t, dsn)})
	n.Store(0)
	_, err = counted(gw2.URL, researchKey, &n).Messages.New(context.Background(), hello("claude-haiku-4-5", 100, "after restart"))
	if !errors.As(err, &ae) {
		t.Fatalf("first call after a restart = %v, want a refusal: the spend was not kept", err)
	}
	checkRefusal(t, ae, n.Load(), "team research")
	if got := gw2.rec.count(200); got != 0 {
		t.Errorf("the restarted gateway sent %d calls upstream, want 0", got)
	}
	// A key with no budget of its team's, but one of its own (weekly), is not
	// refused by research's.
	ops := v2(gw2.URL, "ck-ops-alice-01")
	if _, err := ops.Messages.New(context.Background(), hello("claude-haiku-4-5", 10, "hi")); err != nil {
		t.Errorf("call of team ops = %v, want an answer", err)
	}
}

// TestServeBudgetCostsUsage: what a call spends is its usage priced by the catalog,
// for a JSON answer and for a stream, counted against the key's and the team's
// budgets alike.
func TestServeBudgetCostsUsage(t *testing.T) {
	t.Parallel()
	dsn := jobstest.SQLite().NewDSN(t)
	store := openSpend(t, dsn)
	gw := startGateway(t, setup{keys: budgetKeys("100"), spend: store})
	ctx := context.Background()
	cat := catalog.Default()
	m, err := cat.Resolve("claude-haiku-4-5")
	if err != nil {
		t.Fatal(err)
	}
	c := v2(gw.URL, "ck-ops-alice-01")
	msg, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 200, "Cost me"))
	if err != nil {
		t.Fatal(err)
	}
	st := c.Messages.NewStreaming(ctx, hello("claude-haiku-4-5", 200, "Cost me a stream"))
	var acc anthropic.Message
	for st.Next() {
		acc.Accumulate(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var want spend.Micros
	for _, u := range []anthropic.Usage{msg.Usage, acc.Usage} {
		if u.OutputTokens == 0 {
			t.Fatalf("usage %+v: no output, nothing to price", u)
		}
		want += spend.FromUSD(cat.Cost(m, catalog.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
			CacheWrite5mTokens: u.CacheCreationInputTokens, CacheReadTokens: u.CacheReadInputTokens}, false))
	}
	waitFor(t, func() bool {
		got, _ := store.SpendOf(ctx, "key:alice", jobs.PeriodWeek, time.Now())
		return got == want
	}, "key alice's weekly spend to be the calls' cost")
	for _, p := range jobs.Periods {
		if got, err := store.SpendOf(ctx, "key:alice", p, time.Now()); err != nil || got != want {
			t.Errorf("SpendOf(key:alice, %s) = %v, %v, want %v", p, got, err, want)
		}
	}
	if got, _ := store.SpendOf(ctx, "team:ops", jobs.PeriodDay, time.Now()); got != 0 {
		t.Errorf("team ops (no budget) recorded %v, want nothing", got)
	}
}

// TestServeBudgetSharedByGateways: two gateways on one Postgres store share the
// spend: once calls through the first reach research's budget, the second refuses
// the team's first call.
func TestServeBudgetSharedByGateways(t *testing.T) {
	t.Parallel()
	dsn := jobstest.Postgres().NewDSN(t)
	keys := budgetKeys("0.002")
	g1 := startGateway(t, setup{keys: keys, spend: openSpend(t, dsn)})
	g2 := startGateway(t, setup{keys: keys, spend: openSpend(t, dsn), em: g1.em})
	c2 := v2(g2.URL, researchKey)
	if _, err := c2.Messages.New(context.Background(), hello("claude-haiku-4-5", 10, "first")); err != nil {
		t.Fatalf("first call through the second gateway = %v, want an answer", err)
	}
	_, answered := spendUntilRefused(t, v2(g1.URL, researchKey))
	if answered == 0 {
		t.Fatal("the first gateway refused its first call: nothing was spent through it")
	}
	before := g2.rec.count(200)
	var n atomic.Int64
	_, err := counted(g2.URL, researchKey, &n).Messages.New(context.Background(), hello("claude-haiku-4-5", 100, "second"))
	var ae *anthropic.Error
	if !errors.As(err, &ae) {
		t.Fatalf("call through the second gateway = %v, want a refusal: it did not see the first's spend", err)
	}
	checkRefusal(t, ae, n.Load(), "team research")
	if got := g2.rec.count(200); got != before {
		t.Errorf("the second gateway sent the refused call upstream")
	}
}

// TestServeBudgetHoldsBurst: N calls at once whose worst cases together exceed the
// budget are not all admitted: each holds its worst case while in flight, so the
// budget is never overshot, though no call has settled when the others are checked
// (the emulator's latency keeps them in flight).
func TestServeBudgetHoldsBurst(t *testing.T) {
	t.Parallel()
	dsn := jobstest.SQLite().NewDSN(t)
	store := openSpend(t, dsn)
	const budget = "0.003"
	gw := startGateway(t, setup{keys: budgetKeys(budget), spend: store, emCfg: emulator.Config{LatencyScale: 1}})
	cat := catalog.Default()
	m, _ := cat.Resolve("claude-haiku-4-5")
	const n, maxTokens = 12, 200
	worst := spend.WorstCase(cat, m, 10, maxTokens, false) // at least this: 10 input tokens
	if limit := spend.FromUSD(0.003); n*worst <= limit {
		t.Fatalf("%d calls of worst case %v fit the budget %v: the burst would not test the holds", n, worst, limit)
	}
	c := v2(gw.URL, researchKey)
	var (
		wg                sync.WaitGroup
		admitted, refused atomic.Int64
	)
	for range n {
		wg.Go(func() {
			_, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", maxTokens, "Tell me a story about holds"))
			var ae *anthropic.Error
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.As(err, &ae) && ae.StatusCode == http.StatusPaymentRequired:
				refused.Add(1)
			default:
				t.Errorf("call = %v, want an answer or a 402", err)
			}
		})
	}
	wg.Wait()
	gw.G.WaitSettled() // the last calls' costs are in the store
	if admitted.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d admitted, %d refused, want some of each", admitted.Load(), refused.Load())
	}
	spent, err := store.SpendOf(context.Background(), "team:research", jobs.PeriodDay, time.Now())
	if err != nil || spent > spend.FromUSD(0.003) {
		t.Errorf("spent %v (%v), want at most the budget $%s: the burst overshot", spent, err, budget)
	}
}

// TestServeBudgetConfigErrors: a bad budget names the line and the field, never a key.
func TestServeBudgetConfigErrors(t *testing.T) {
	t.Parallel()
	const key = "ck-secret-key-1"
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "negative", in: "keys:\n  " + key + ": {team: a, budget: {day: -1}}\n", want: `line 2: budget.day "-1"`},
		{name: "not a number", in: "teams:\n  a: {budget: {week: lots}}\nkeys:\n  " + key + ": a\n", want: `line 2: budget.week "lots"`},
		{name: "unknown period", in: "keys:\n  " + key + ": {team: a, budget: {year: 5}}\n", want: `line 2: unknown field "year"`},
		{name: "team without keys", in: "teams:\n  b: {budget: {day: 5}}\nkeys:\n  " + key + ": a\n", want: "line 2: teams.b: no key"},
		{name: "unknown team field", in: "teams:\n  a: {budgets: {day: 5}}\nkeys:\n  " + key + ": a\n", want: `line 2: unknown field "budgets"`},
		{name: "label twice", in: "keys:\n  " + key + ": {team: a, label: x}\n  ck-other-key-2: {team: a, label: x}\n", want: `label "x" names two keys`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := serve.ParseKeys([]byte(tc.in))
			if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseKeys(%q) = %v, want an error saying %q without the key", tc.in, err, tc.want)
			}
		})
	}
	k, err := serve.ParseKeys([]byte(budgetKeys("50")))
	if err != nil || !k.HasBudgets() {
		t.Fatalf("ParseKeys(budgets) = %v, %v, want budgets", k, err)
	}
	for _, team := range k.Teams() {
		if team.Name == "research" && (team.Budget["day"] != 50_000_000 || team.Budget["month"] != 2_000_000_000 || len(team.Budget) != 2) {
			t.Errorf("research's budget = %v, want day $50 and month $2000", team.Budget)
		}
	}
}
