package runner

import (
	"context"
	"log/slog"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
)

// The warmth of a run's prompt-cache prefixes shared by the processes working it
// (docs/run.md, "Prompt caching"): the store's clade_cache_warm table, by the
// store's clock.
//
// A process asks the store only about a prefix it finds cold (or close to its
// TTL) itself: one atomic claim-or-read (jobs.Store.ClaimCacheWarm). Warm
// elsewhere: it reads, and keeps the prefix warm locally from then on. Claimed by
// another live process: it polls the store (CacheWarmState, a read) every
// cachePollInterval until the prefix is warm, or the claim is dead (its worker's
// heartbeat older than its dead-after window, or the claim older than the claim
// timeout), and then asks again. Otherwise it holds the claim and sends the
// warming request; its answer's first byte marks the prefix warm in the store,
// and a failure before it releases the claim. Reads extend the store's warmth at
// most once per prefix per tenth of its TTL per process.
//
// The first byte's mark is written on a goroutine of its own, started by the HTTP
// client's trace hook, which must not wait for the store: the answer is read
// meanwhile. The attempt owns that write: its end (ticket.finish) waits for it
// before the attempt's next store write (cold, after an API error) and before its
// result is recorded, so the writes of one attempt reach the store in order and
// none is left behind when the workers stop.
//
// A warming request answered with an API error (its first byte marked the prefix
// warm) marks it cold again. A failed store write after the first byte or a
// finished attempt (mark, release, cold) is logged, not returned: the other
// processes then wait for the claim to die and warm the prefix themselves, or
// expect reads that write; either costs cache writes, not a result.

// Defaults of the shared warmth.
const (
	// cachePollInterval is how often a process waiting for another's warming
	// request reads the store: 100 ms, against a first byte that takes about a
	// second.
	cachePollInterval = 100 * time.Millisecond
	// cacheClaimTimeout bounds a warming claim whose worker still heartbeats:
	// 2 minutes, over an admission wait and a non-streamed answer's first byte.
	// A dead worker's claim is dead with it (jobs.DefaultDeadAfter).
	cacheClaimTimeout = 2 * time.Minute
	// cacheStoreWriteTimeout bounds the store writes made after the HTTP trace
	// hook (mark) and a failed attempt's release.
	cacheStoreWriteTimeout = 5 * time.Second
)

// warmStore is the store's shared warmth (*jobs.Store; tests wrap it).
type warmStore interface {
	ClaimCacheWarm(ctx context.Context, p jobs.CachePrefix, worker string, margin, timeout time.Duration) (jobs.CacheWarmth, error)
	CacheWarmState(ctx context.Context, p jobs.CachePrefix, worker string) (jobs.CacheWarmth, error)
	RefreshCacheWarm(ctx context.Context, p jobs.CachePrefix, ttl time.Duration) error
	MarkCacheWarm(ctx context.Context, p jobs.CachePrefix, worker string, ttl time.Duration) error
	ReleaseCacheWarm(ctx context.Context, p jobs.CachePrefix, worker string) error
	ColdCacheWarm(ctx context.Context, p jobs.CachePrefix) error
}

// sharedWarmth is one process's handle on the run's shared warmth.
type sharedWarmth struct {
	store         warmStore
	runID         int64
	worker        string // this process's clade_worker id
	poll, timeout time.Duration
	log           *slog.Logger
}

// share makes s use the store's warmth for run, as worker; call it before the
// workers start.
func (s *cacheSched) share(st warmStore, runID int64, worker string, poll, timeout time.Duration, log *slog.Logger) {
	if poll <= 0 {
		poll = cachePollInterval
	}
	if timeout <= 0 {
		timeout = cacheClaimTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.shared = &sharedWarmth{store: st, runID: runID, worker: worker, poll: poll, timeout: timeout, log: log}
}

func (sh *sharedWarmth) key(id prefixID) jobs.CachePrefix {
	return jobs.CachePrefix{RunID: sh.runID, Model: id.model, Key: id.key.String()}
}

// claim returns how long prefix id stays warm when another process warmed it
// (> 0: read it), or 0 once this process holds its warming claim, waiting while
// another live process holds it.
func (sh *sharedWarmth) claim(ctx context.Context, id prefixID, p cacheprefix.Prefix) (time.Duration, error) {
	margin := rewarmMargin(p.TTL)
	for {
		left, mine, err := sh.tryClaim(ctx, id, p.TTL)
		if err != nil || mine || left > 0 {
			return left, err
		}
		if err := sh.await(ctx, sh.key(id), margin); err != nil {
			return 0, err
		}
	}
}

// tryClaim is one try of claim, without waiting: mine once this process holds
// prefix id's warming claim; otherwise left, how long it stays warm when another
// process warmed it (0 while another live process holds the claim).
func (sh *sharedWarmth) tryClaim(ctx context.Context, id prefixID, ttl time.Duration) (left time.Duration, mine bool, err error) {
	margin := rewarmMargin(ttl)
	w, err := sh.store.ClaimCacheWarm(ctx, sh.key(id), sh.worker, margin, sh.timeout)
	switch {
	case err != nil:
		return 0, false, err
	case w.Mine:
		return 0, true, nil
	case w.WarmFor > margin:
		return w.WarmFor, false, nil
	}
	return 0, false, nil
}

// await polls the store until prefix key is warm for more than margin, or no
// live process claims it.
func (sh *sharedWarmth) await(ctx context.Context, key jobs.CachePrefix, margin time.Duration) error {
	t := time.NewTicker(sh.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		w, err := sh.store.CacheWarmState(ctx, key, sh.worker)
		if err != nil {
			return err
		}
		if w.WarmFor > margin || !w.Claimed {
			return nil
		}
	}
}

// refresh extends prefix id's warmth in the store to ttl from now.
func (sh *sharedWarmth) refresh(ctx context.Context, id prefixID, ttl time.Duration) error {
	return sh.store.RefreshCacheWarm(ctx, sh.key(id), ttl)
}

// mark starts recording prefix id warm for ttl in the store (its warming answer's
// first byte) and returns at once, with the write to wait for; nil on a nil
// sharedWarmth.
func (sh *sharedWarmth) mark(id prefixID, ttl time.Duration) *storeWrite {
	if sh == nil {
		return nil
	}
	w := &storeWrite{done: make(chan struct{})}
	go func() { // its owner: the ticket's finish, which waits for it
		defer close(w.done)
		ctx, cancel := context.WithTimeout(context.Background(), cacheStoreWriteTimeout)
		defer cancel()
		if err := sh.store.MarkCacheWarm(ctx, sh.key(id), sh.worker, ttl); err != nil {
			sh.log.Warn("record a warm cache prefix (other processes warm it again once the claim times out)",
				"model", id.model, "cache_prefix", id.key.String(), "err", err)
		}
	}()
	return w
}

// storeWrite is a store write in flight (mark's).
type storeWrite struct{ done chan struct{} }

// wait blocks until the write is over (at most cacheStoreWriteTimeout); a no-op
// on nil.
func (w *storeWrite) wait() {
	if w != nil {
		<-w.done
	}
}

// release drops this process's claim on prefix id, whose warming attempt failed;
// a no-op on a nil sharedWarmth.
func (sh *sharedWarmth) release(id prefixID) {
	if sh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cacheStoreWriteTimeout)
	defer cancel()
	if err := sh.store.ReleaseCacheWarm(ctx, sh.key(id), sh.worker); err != nil {
		sh.log.Warn("release a cache prefix claim (other processes warm it once the claim times out)",
			"model", id.model, "cache_prefix", id.key.String(), "err", err)
	}
}

// cold records prefix id cold in the store again: its warming request, which
// marked it warm at its first byte, was answered with an API error (no cache
// written). A no-op on a nil sharedWarmth.
func (sh *sharedWarmth) cold(id prefixID) {
	if sh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cacheStoreWriteTimeout)
	defer cancel()
	if err := sh.store.ColdCacheWarm(ctx, sh.key(id)); err != nil {
		sh.log.Warn("record a cache prefix cold after its warming request failed (other processes read it until its TTL)",
			"model", id.model, "cache_prefix", id.key.String(), "err", err)
	}
}
