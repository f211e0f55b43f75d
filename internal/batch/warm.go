package batch

// Prompt-cache warming through realtime (Config.CacheWarm CacheWarmRealtime,
// `clade batch --cache-warm realtime`).
//
// The API caches batch requests best effort: it processes a batch's requests
// concurrently, so several lines of a cold prefix write (and pay for) it before
// one of them is readable. Before a prefix's lines go into a batch, one of them
// (its first pending line) is sent through the realtime workers (realtime.go:
// full price, the tier's realtime admission), and the batch is created once
// that call is answered and its result written (its cache write is readable
// from the answer's start; waiting for the result as well means a crash after
// it never sends the line again), within the prefix's TTL. The warm call's
// result is the line's one result; the line is not in the batch.
//
// Where that pays: plan.WarmSaving, the best-effort batch cache model clade
// plan estimates by too (CacheWarmGroup G, as the emulator's
// --batch-cache-group: a cold prefix of k lines is expected to be written by
// plan.ColdWrites E(k) of them in a batch; warming writes it once at full price
// and the other k − 1 lines read it at batch price). warmSaving gives it the
// warm line's other input and expected output (plan.DefaultOutputRatio of
// max_tokens), which warming pays at full price. A prefix is warmed when the
// saving is positive: on current prices k ≥ 3 with G = 4, never with G ≤ 3.
// A prefix the store already has warm (another process of the run, an earlier
// start) is not warmed again; lines without cache_control are not touched.
//
// Failure. The warm call is a River job of the run, durable as any realtime
// request. A run stopped after it was answered finds, when resumed, the line
// answered (not in BatchPending, not sent again) and the prefix warm in the
// store (no second warm call while its TTL lasts). A run killed while the call
// was in flight has no result for it: as for any realtime request, the line is
// sent again (in the batch, or by realtime when its job is kept:
// RetryRealtime). A warm call that fails, or ends without writing the cache,
// gives up warming that prefix: its lines go into batches as they are.

import (
	"context"
	"fmt"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/plan"
)

// Prompt-cache warming modes (Config.CacheWarm).
const (
	CacheWarmOff      = "off"
	CacheWarmRealtime = "realtime"
	// DefaultCacheWarmGroup is Config.CacheWarmGroup's default, the planner's
	// (plan.DefaultCacheWarmGroup: 4, as the emulator's best-effort batch cache).
	DefaultCacheWarmGroup = plan.DefaultCacheWarmGroup
	// warmPoll is how often fill looks again while a warm call is not answered.
	warmPoll = 50 * time.Millisecond
)

// warmID is a prefix as the store counts it: its key and the lines' model.
type warmID struct {
	key   cacheprefix.Key
	model string
}

// warmPhase is where one prefix is.
type warmPhase int

const (
	warmCall  warmPhase = iota // its warm call is queued or running
	warmReady                  // cached: its lines go into batches
	warmNone                   // not warmed (does not pay, failed): lines go as they are
)

type warmState struct {
	phase warmPhase
	model string // as sent (alias resolved, routing applied)
	// req is the warm call's request (0: a call queued by an earlier process);
	// counted, once it is cached, in Summary.WarmedPrefixes.
	req     int64
	counted bool
	// until is when the prefix runs out of the cache, counted from when its warm
	// call was seen answered (the store's clade_cache_warm, which the realtime
	// scheduler keeps, says it too).
	until time.Time
}

// warmUp, with CacheWarmRealtime, starts the warm calls of the prefixes that
// pay and reports whether fill may create batches: every warm call has cached
// its prefix (or given up). It does nothing otherwise. Only the prefixes whose
// lines fit in room (the requests the fill may put in batches), in the order
// BatchPending sends them, are looked at: the others' batches come later,
// and a prefix warmed now could run out of its TTL before them.
func (d *dispatcher) warmUp(ctx context.Context, room int64) (bool, error) {
	if d.cfg.CacheWarm != CacheWarmRealtime {
		return true, nil
	}
	if d.life.Importing() {
		return false, nil // the realtime workers need the whole input
	}
	st := d.cfg.Store
	prefixes, err := st.BatchWarmPrefixes(ctx, d.runID, d.cfg.RetryVia == RetryRealtime)
	if err != nil {
		return false, err
	}
	if d.warm == nil {
		d.warm = map[warmID]*warmState{}
	}
	waiting, readied, skipped := false, false, d.warmSkipped
	var upto int64
	for i, p := range prefixes {
		if upto += p.Lines; upto > room && i > 0 {
			break
		}
		id := warmID{p.Prefix.Key, p.Model}
		ws := d.warm[id]
		if ws != nil && ws.phase == warmReady {
			// Still warm enough for a batch made now? Else it is decided again.
			margin := warmMargin(p.Prefix.TTL)
			if d.clock.Now().Before(ws.until.Add(-margin)) {
				continue
			}
			w, err := st.CacheWarmState(ctx, d.warmKey(ws.model, p.Prefix), "")
			if err != nil {
				return false, err
			}
			if w.WarmFor > margin {
				continue
			}
			delete(d.warm, id)
			ws = nil
		}
		if ws == nil {
			if ws, err = d.warmStart(ctx, p); err != nil {
				return false, err
			}
			if ws == nil {
				continue // nothing of it for batches (all its lines are realtime's)
			}
			d.warm[id] = ws
			waiting = waiting || ws.phase == warmCall // p was read before its call was queued
			continue
		}
		if ws.phase != warmCall {
			continue
		}
		ready, err := d.warmDone(ctx, p, ws)
		if err != nil {
			return false, err
		}
		switch {
		case ready:
			readied = true
		case ws.phase == warmCall:
			waiting = true
		}
	}
	if d.warmStarted > 0 {
		d.progress("prompt cache: warming %d prefixes in realtime before their batch (expected to save $%.4f), %d where it does not pay",
			d.warmStarted, d.warmSaving, d.warmSkipped-skipped)
		d.warmStarted, d.warmSaving = 0, 0
	}
	if waiting {
		d.warmWake = d.clock.Now().Add(warmPoll)
		return false, nil
	}
	d.warmWake = time.Time{}
	if readied && d.cfg.Test.AfterWarm != nil {
		if err := d.cfg.Test.AfterWarm(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// warmStart decides what to do with prefix p, seen for the first time (or again
// once its warmth ran out): nothing when the store has it warm or warming does
// not pay; else it queues the warm call. nil: none of its lines is batch
// dispatch's to send.
func (d *dispatcher) warmStart(ctx context.Context, p jobs.BatchWarmPrefix) (*warmState, error) {
	st := d.cfg.Store
	if p.Jobs > 0 {
		// A call queued by an earlier process (resumed with its jobs): it is
		// the warm call; wait for it.
		line := jobs.Request{Model: p.Model}
		d.resolveModel(&line)
		return &warmState{phase: warmCall, model: line.Model}, nil
	}
	if p.First == 0 {
		return nil, nil
	}
	reqs, err := st.BatchRequests(ctx, []jobs.BatchRef{{ID: p.First}})
	if err != nil || len(reqs) == 0 {
		return nil, err
	}
	req := &reqs[0]
	d.resolveModel(req)
	ws := &warmState{phase: warmNone, model: req.Model}
	w, err := st.CacheWarmState(ctx, d.warmKey(req.Model, p.Prefix), "")
	if err != nil {
		return nil, err
	}
	if w.WarmFor > warmMargin(p.Prefix.TTL) {
		ws.phase, ws.until = warmReady, d.clock.Now().Add(w.WarmFor)
		return ws, nil
	}
	m, err := d.cfg.Catalog.Resolve(req.Model)
	if err != nil {
		return ws, nil // a model the catalog does not price: not warmed
	}
	saving := warmSaving(d.cfg.Catalog, m, p.Prefix, p.Lines, d.cfg.CacheWarmGroup, req)
	if saving <= 0 {
		d.warmSkipped++
		d.log.Debug("prompt-cache prefix not warmed: it does not pay", "line", req.Line, "lines", p.Lines, "saving_usd", saving)
		return ws, nil
	}
	queued, err := st.EnqueueWarm(ctx, d.runID, req.ID, d.cfg.Realtime.MaxAttempts)
	if err != nil || !queued {
		return ws, err
	}
	if d.rt == nil || d.rt.stoppedByBudget() {
		if _, err := d.startRealtime(ctx); err != nil {
			return nil, err
		}
	}
	ws.phase, ws.req = warmCall, req.ID
	d.warmQueued++
	d.log.Debug("prompt-cache prefix warmed in realtime first", "line", req.Line, "custom_id", req.CustomID, "lines", p.Lines, "saving_usd", saving)
	d.warmStarted++
	d.warmSaving += saving
	return ws, nil
}

// warmDone reports whether prefix p's warm call has cached it: its result is
// written (so a crash from here on never sends the line again) and its usage
// wrote or read the prefix. It gives up (warmNone) when the call ended without,
// or no realtime worker is left to send it. A call queued by an earlier process
// (req 0) counts once its job is over and the store has the prefix warm.
func (d *dispatcher) warmDone(ctx context.Context, p jobs.BatchWarmPrefix, ws *warmState) (bool, error) {
	st := d.cfg.Store
	var ready, over bool
	if ws.req == 0 {
		w, err := st.CacheWarmState(ctx, d.warmKey(ws.model, p.Prefix), "")
		if err != nil {
			return false, err
		}
		over = p.Jobs == 0
		ready = over && w.WarmFor > warmMargin(p.Prefix.TTL)
	} else {
		r, err := st.ResultOf(ctx, ws.req)
		if err != nil {
			return false, err
		}
		over = r.Type != "" || p.Jobs == 0
		ready = r.Type == string(jobs.Succeeded) && r.CacheWrite+r.CacheRead > 0
	}
	switch {
	case ready:
		ws.phase = warmReady
		ws.until = d.clock.Now().Add(p.Prefix.TTL)
		if ws.req != 0 && !ws.counted {
			ws.counted = true
			d.warmed = append(d.warmed, ws.req)
		}
		return true, nil
	case over, d.rt == nil, d.rt.stoppedByBudget():
		ws.phase = warmNone
		d.log.Warn("prompt-cache warm call ended without caching its prefix; its lines go into batches as they are", "lines", p.Lines)
	}
	return false, nil
}

func (d *dispatcher) warmKey(model string, p cacheprefix.Prefix) jobs.CachePrefix {
	return jobs.CachePrefix{RunID: d.runID, Model: model, Key: p.Key.String()}
}

// warmMargin is how much of a prefix's TTL must be left for its lines to go into
// a batch as warm: a tenth (30 s of 5 minutes), as the realtime scheduler's
// re-warm margin.
func warmMargin(ttl time.Duration) time.Duration { return ttl / 10 }

// warmSaving is what warming prefix p of lines pending lines on model m saves in
// USD, against sending them all in batches cached in groups of group requests
// (plan.WarmSaving); req is the line the warm call sends, whose input apart from
// the prefix and expected output warming pays at full price. 0 or less: it does
// not pay.
func warmSaving(cat *catalog.Catalog, m *catalog.Model, p cacheprefix.Prefix, lines int64, group int, req *jobs.Request) float64 {
	rest := catalog.Usage{InputTokens: max(req.EstInputTokens-p.Tokens, 0), OutputTokens: int64(plan.DefaultOutputRatio * float64(req.MaxTokens))}
	return plan.WarmSaving(cat, m, p.Tokens, p.TTL, lines, group, rest)
}

// warmReport is the prompt-cache prefixes this process warmed through realtime,
// and what their warm calls cost (their results, at full price).
func (d *dispatcher) warmReport(ctx context.Context) (n int64, usd float64) {
	for _, id := range d.warmed {
		if r, err := d.cfg.Store.ResultOf(ctx, id); err == nil {
			usd += r.CostUSD
		}
	}
	return int64(len(d.warmed)), usd
}

// warmNote is the part of a progress line that says how many prefixes were
// warmed through realtime so far, and their cost; "" when none.
func (d *dispatcher) warmNote(ctx context.Context) string {
	n, usd := d.warmReport(ctx)
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d prefixes warmed in realtime, $%.4f so far", n, usd)
}
