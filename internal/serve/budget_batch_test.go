package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// batchOf is a batch of n haiku requests of maxTokens each.
func batchOf(n int, maxTokens int64) anthropic.MessageBatchNewParams {
	var reqs []anthropic.MessageBatchNewParamsRequest
	for i := range n {
		reqs = append(reqs, anthropic.MessageBatchNewParamsRequest{CustomID: "r" + itoa(i), Params: anthropic.MessageBatchNewParamsRequestParams{
			Model: "claude-haiku-4-5", MaxTokens: maxTokens,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Tell me about batches " + itoa(i)))}}})
	}
	return anthropic.MessageBatchNewParams{Requests: reqs}
}

// batchCosts reads a batch's results through the gateway and returns the sum, over
// its succeeded results, of their usage at the batch price and at the Messages
// price, in micro-dollars, and how many succeeded.
func batchCosts(t *testing.T, url, id string) (batch, messages spend.Micros, n int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/messages/batches/"+id+"/results", nil)
	req.Header.Set("x-api-key", researchKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("results: %d", resp.StatusCode)
	}
	cat := catalog.Default()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r struct {
			Result struct {
				Type    string `json:"type"`
				Message struct {
					Model string         `json:"model"`
					Usage upstream.Usage `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Result.Type != "succeeded" {
			continue
		}
		m, err := cat.Resolve(r.Result.Message.Model)
		if err != nil {
			t.Fatal(err)
		}
		n++
		batch += spend.FromUSD(spend.Cost(cat, m, spend.Usage(r.Result.Message.Usage), true))
		messages += spend.FromUSD(spend.Cost(cat, m, spend.Usage(r.Result.Message.Usage), false))
	}
	return batch, messages, n
}

// reconcileUntilSettled reconciles g until the store holds no batch.
func reconcileUntilSettled(t *testing.T, st *jobs.Store, gs ...*gateway) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var wg sync.WaitGroup
		for _, g := range gs {
			wg.Go(func() {
				if err := g.G.ReconcileBatches(context.Background()); err != nil {
					t.Errorf("ReconcileBatches: %v", err)
				}
			})
		}
		wg.Wait()
		holds, err := st.BatchHolds(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(holds) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("holds still pending after 30 s: %+v", holds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func daySpend(t *testing.T, st *jobs.Store, scope string) spend.Micros {
	t.Helper()
	m, err := st.SpendOf(context.Background(), scope, jobs.PeriodDay, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestServeBatchBudgetCostsAtBatchPriceAcrossRestart: a batch created through one
// gateway is held in the store while it runs; a second gateway on the same SQLite
// file (the first one gone: a restart) reconciles it once it ended, and the team's
// spend is then exactly the sum of its succeeded results' usage at the batch
// price, half the Messages price of the same usage.
func TestServeBatchBudgetCostsAtBatchPriceAcrossRestart(t *testing.T) {
	t.Parallel()
	dsn := jobstest.SQLite().NewDSN(t)
	em := emulator.StartTB(t, emulator.Config{Catalog: catalog.Default(), Tier: "unlimited", BurstFraction: 1, APIKeys: []string{orgKey}, ClockSpeed: 1000})
	st1 := openSpend(t, dsn)
	gw1 := startGateway(t, setup{keys: budgetKeys("5"), spend: st1, em: em})
	c := v2(gw1.URL, researchKey)
	b, err := c.Messages.Batches.New(context.Background(), batchOf(5, 200))
	if err != nil {
		t.Fatal(err)
	}
	holds, err := st1.BatchHolds(context.Background())
	if err != nil || len(holds) != 1 || holds[0].BatchID != b.ID || holds[0].Worst <= 0 || len(holds[0].Scopes) != 1 || holds[0].Scopes[0] != "team:research" {
		t.Fatalf("holds after create = %+v, %v; want the batch's worst case held for team research", holds, err)
	}
	stat := gw1.G.Status(context.Background())
	found := false
	for _, s := range stat.Budgets {
		if s.Team == "research" && s.Key == "" && s.Period == "day" {
			found = true
			if got := spend.FromUSD(s.HeldUSD); got != holds[0].Worst {
				t.Errorf("status held_usd = %v, want the pending batch's worst case %v", s.HeldUSD, holds[0].Worst.USD())
			}
		}
	}
	if !found {
		t.Error("no daily budget of team research in the status")
	}
	// The restart: a new gateway on the same file; gw1 is not used again.
	gw2 := startGateway(t, setup{keys: budgetKeys("5"), spend: openSpend(t, dsn), em: em})
	st2 := openSpend(t, dsn)
	reconcileUntilSettled(t, st2, gw2)
	want, messages, n := batchCosts(t, gw2.URL, b.ID)
	if n == 0 || want <= 0 {
		t.Fatalf("%d succeeded results costing %v: the batch did not exercise the cost", n, want)
	}
	if got := daySpend(t, st2, "team:research"); got != want {
		t.Errorf("team research spent %d µ$ after the batch, want %d (its succeeded results at the batch price)", got, want)
	}
	if d := messages - 2*want; d < -spend.Micros(n) || d > spend.Micros(n) {
		t.Errorf("batch price %d µ$, Messages price %d µ$: want half (within rounding)", want, messages)
	}
	// Settled once: another reconcile adds nothing.
	if err := gw2.G.ReconcileBatches(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := daySpend(t, st2, "team:research"); got != want {
		t.Errorf("after a second reconcile, spent %d, want %d", got, want)
	}
}

// TestServeBatchBudgetRefusesOverBudget: a batch whose worst case at the batch
// price exceeds the team's budget gets 402 billing_error naming the batch's worst
// case, and never reaches the API; an unparseable batch of a budgeted key gets a
// 400 from the gateway.
func TestServeBatchBudgetRefusesOverBudget(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{keys: budgetKeys("0.01"), spend: openSpend(t, jobstest.SQLite().NewDSN(t))})
	c := v2(gw.URL, researchKey)
	_, err := c.Messages.Batches.New(context.Background(), batchOf(4, 8000)) // 4 × 8,000 × $2.5/M = $0.08
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusPaymentRequired || !strings.Contains(ae.RawJSON(), `"billing_error"`) ||
		!strings.Contains(ae.RawJSON(), "team research: its daily budget of $0.0100") || !strings.Contains(ae.RawJSON(), "this batch's worst case of $0.08") {
		t.Fatalf("over-budget batch = %v, want 402 billing_error naming the batch's worst case", err)
	}
	for _, u := range gw.rec.urlsSoFar() {
		if strings.Contains(u, "/v1/messages/batches") {
			t.Errorf("the refused batch reached upstream: %s", u)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/messages/batches", strings.NewReader(`{"requests": [{"custom_id": "a", "params": "nope"}]}`))
	req.Header.Set("x-api-key", researchKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unparseable batch = %d, want 400", resp.StatusCode)
	}
	if len(gw.rec.urlsSoFar()) != 0 {
		t.Errorf("upstream saw %v, want nothing", gw.rec.urlsSoFar())
	}
}

// TestServeBatchBudgetHoldRefusesCall: a pending batch's hold (worst case $0.04 of
// a $0.05 budget) makes a call whose worst case ($0.02) fits the budget alone get
// 402; a reconcile while the batch still runs keeps the hold.
func TestServeBatchBudgetHoldRefusesCall(t *testing.T) {
	t.Parallel()
	st := openSpend(t, jobstest.SQLite().NewDSN(t))
	gw := startGateway(t, setup{keys: budgetKeys("0.05"), spend: st, emCfg: emulator.Config{BatchProcessingRate: 1e-9}})
	c := v2(gw.URL, researchKey)
	ctx := context.Background()
	if _, err := c.Messages.Batches.New(ctx, batchOf(1, 16000)); err != nil { // 16,000 × $2.5/M = $0.04 (and its input)
		t.Fatal(err)
	}
	_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 1000, "hi")) // ≈ $0.005 fits
	if err != nil {
		t.Fatalf("a small call with the batch pending: %v", err)
	}
	_, err = c.Messages.New(ctx, hello("claude-haiku-4-5", 4000, "hi")) // $0.02 fits $0.05, not with $0.04 held
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("call over the budget left by the pending batch = %v, want 402", err)
	}
	if err := gw.G.ReconcileBatches(ctx); err != nil {
		t.Fatal(err)
	}
	if holds, err := st.BatchHolds(ctx); err != nil || len(holds) != 1 {
		t.Errorf("holds after reconciling a running batch = %+v, %v; want it still held", holds, err)
	}
}

// TestServeBatchBudgetTwoGatewaysPostgres: two gateways on one Postgres reconcile
// the same ended batch at the same time; its cost is counted once.
func TestServeBatchBudgetTwoGatewaysPostgres(t *testing.T) {
	t.Parallel()
	dsn := jobstest.Postgres().NewDSN(t)
	em := emulator.StartTB(t, emulator.Config{Catalog: catalog.Default(), Tier: "unlimited", BurstFraction: 1, APIKeys: []string{orgKey}, ClockSpeed: 1000})
	st := openSpend(t, dsn)
	gw1 := startGateway(t, setup{keys: budgetKeys("5"), spend: st, em: em})
	gw2 := startGateway(t, setup{keys: budgetKeys("5"), spend: openSpend(t, dsn), em: em})
	c1, c2 := v2(gw1.URL, researchKey), v2(gw2.URL, researchKey)
	b, err := c1.Messages.Batches.New(context.Background(), batchOf(6, 100))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		got, err := c2.Messages.Batches.Get(context.Background(), b.ID, anthropic.MessageBatchGetParams{})
		return err == nil && got.ProcessingStatus == "ended"
	}, "the batch to end")
	reconcileUntilSettled(t, st, gw1, gw2)
	want, _, n := batchCosts(t, gw1.URL, b.ID)
	if n == 0 {
		t.Fatal("no succeeded result")
	}
	if got := daySpend(t, st, "team:research"); got != want {
		t.Errorf("spent %d µ$ with two gateways reconciling, want %d once", got, want)
	}
}

// TestServeBatchBudgetReleasesUnknownAndOld: a hold of a batch the API does not
// know (404) and one older than 29 days are released by a reconcile, with a
// warning, and cost nothing.
func TestServeBatchBudgetReleasesUnknownAndOld(t *testing.T) {
	t.Parallel()
	st := openSpend(t, jobstest.SQLite().NewDSN(t))
	gw := startGateway(t, setup{keys: budgetKeys("5"), spend: st})
	ctx := context.Background()
	for _, h := range []jobs.BatchHold{
		{BatchID: "msgbatch_gone", Scopes: []string{"team:research"}, Worst: 1000, Created: time.Now()},
		{BatchID: "msgbatch_old", Scopes: []string{"team:research"}, Worst: 2000, Created: time.Now().Add(-30 * 24 * time.Hour)},
	} {
		if err := st.AddBatchHold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := gw.G.ReconcileBatches(ctx); err != nil {
		t.Fatal(err)
	}
	if holds, err := st.BatchHolds(ctx); err != nil || len(holds) != 0 {
		t.Errorf("holds left = %+v, %v; want both released", holds, err)
	}
	if got := daySpend(t, st, "team:research"); got != 0 {
		t.Errorf("released holds cost %d µ$, want 0", got)
	}
	logs := gw.logs.String()
	if !strings.Contains(logs, "batch=msgbatch_gone") || !strings.Contains(logs, "batch=msgbatch_old") || !strings.Contains(logs, "level=WARN") {
		t.Errorf("logs %q: want a warning for each release", logs)
	}
	if strings.Contains(logs, orgKey) {
		t.Error("the org key is in the logs")
	}
}

// TestServeBatchBudgetRunReconciles: Gateway.Run reconciles by itself, every
// RunOptions.BatchReconcile: the batch's cost reaches the store with no test
// calling ReconcileBatches.
func TestServeBatchBudgetRunReconciles(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Catalog: catalog.Default(), Tier: "unlimited", BurstFraction: 1, APIKeys: []string{orgKey}, ClockSpeed: 1000})
	st := openSpend(t, jobstest.SQLite().NewDSN(t))
	gw := startGateway(t, setup{keys: budgetKeys("5"), spend: st, em: em})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gw.G.Run(ctx, ln, serve.RunOptions{ShutdownTimeout: 5 * time.Second, BatchReconcile: 20 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "http://" + ln.Addr().String()
	c := v2(url, researchKey)
	b, err := c.Messages.Batches.New(ctx, batchOf(3, 100))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		holds, err := st.BatchHolds(context.Background())
		return err == nil && len(holds) == 0
	}, "Run to settle the batch")
	want, _, n := batchCosts(t, url, b.ID)
	if got := daySpend(t, st, "team:research"); n == 0 || got != want {
		t.Errorf("spent %d µ$ (%d succeeded), want %d", got, n, want)
	}
}
