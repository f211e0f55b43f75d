package runner

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/upstream"
)

// Prompt-cache scheduling (docs/run.md, "Prompt caching").
//
// A prompt-cache entry becomes readable only once the first response that writes
// it has begun; requests sent before then write (and pay for) the same prefix
// again, and all of it counts toward ITPM. So, per prefix (a request's last
// cache_control breakpoint, found at import: jobs.Request.Cache, long enough for
// the model it is sent to), the scheduler lets one request go first (the warming
// request) and holds the others until its response has started: the first byte of
// the answer (a stream's headers and message_start; a whole response's headers,
// which come with its body). Then they go, each reserving admission for a cache
// read (no ITPM on current models) instead of the whole prompt. A prefix idle for
// close to its TTL (within rewarmMargin of it) is warmed again the same way.
//
// The state is this process's, and the fast path: a prefix it knows warm costs
// no store round trip. Processes working one run share the warmth through the
// run's store (cacheshare.go): a prefix this process finds cold it asks the store
// about once, and reads it if another process warmed it, waits while another
// warms it, or warms it. Requests without a cacheable prefix never touch either.

// rewarmMargin is how long before a prefix's TTL runs out, counted from the last
// request sent on it, the next one warms it again instead of expecting a read:
// a tenth of the TTL (30 s of 5 minutes, 6 of an hour).
func rewarmMargin(ttl time.Duration) time.Duration { return ttl / 10 }

// cacheSched holds the state of each prefix the run has sent.
type cacheSched struct {
	now func() time.Time
	// shared is the run's warmth in the store; nil: this process's only (set
	// by share before the workers start).
	shared *sharedWarmth

	mu       sync.Mutex
	prefixes map[prefixID]*prefixState

	// warmers holds one token per warming ticket whose attempt is not yet admitted
	// (maxWarmersWaiting); nil: no bound (TestHooks.UnboundedWarmers).
	warmers chan struct{}

	// warmed counts warming requests sent (a prefix's first, and re-warms);
	// rewarmed the re-warms; reads the requests sent expecting a cache read.
	warmed, rewarmed, reads atomic.Int64
}

// prefixID is a prefix as sent to one model: caches are per model.
type prefixID struct {
	key   cacheprefix.Key
	model string
}

type prefixState struct {
	// warming is closed when the warming request in flight has started answering
	// or failed; nil when none is in flight.
	warming chan struct{}
	// warm is set once a warming response started; until expires, counted from
	// the last request sent on it (a read refreshes the TTL).
	warm    bool
	expires time.Time
	// refreshed is when this process last extended the prefix's warmth in the
	// store (shared): at most once per rewarmMargin.
	refreshed time.Time
}

// maxWarmersWaiting is how many warming requests may wait for admission at once.
// A warming request waits for its whole prompt's ITPM, and admission is first in,
// first out per class: the reads queued behind it (which take no ITPM) wait with
// it. Where ITPM binds, a cold prefix's warming request waits in acquire instead
// of in line ahead of the warm prefixes' reads, so these wait behind at most this
// many warms, not behind every cold prefix the run's jobs hold, which with long
// prompts could outlast the TTL the reads expect. Where ITPM does not bind, warms
// are admitted at once and the bound does not hold them.
const maxWarmersWaiting = 8

func newCacheSched(now func() time.Time) *cacheSched {
	return &cacheSched{now: now, prefixes: make(map[prefixID]*prefixState), warmers: make(chan struct{}, maxWarmersWaiting)}
}

// ticket is one attempt's place in its prefix's schedule.
type ticket struct {
	s    *cacheSched
	id   prefixID
	ttl  time.Duration
	read bool // sent expecting a cache read
	// warmer: this attempt warms the prefix; done is closed (once) when it has
	// started answering or failed.
	warmer bool
	done   chan struct{}
	once   sync.Once
	// waiting: a warming ticket holding a token of s.warmers until its attempt
	// is admitted (or never sent).
	waiting bool
	// marked: started ran (the prefix was recorded warm, in the store too:
	// mark, the store write in flight, which finish waits for).
	marked bool
	mark   *storeWrite
}

// acquire waits until an attempt on prefix p, sent to model, may go, and says how:
// as the prefix's warming request, or as a read once it is warm (which the
// ticket's fresh settles once the attempt is admitted). It returns ctx's error if
// ctx ends while it waits.
func (s *cacheSched) acquire(ctx context.Context, model string, p cacheprefix.Prefix) (*ticket, error) {
	id := prefixID{key: p.Key, model: model}
	margin := rewarmMargin(p.TTL)
	token := false // holding a token of s.warmers
	unwait := func() {
		if token {
			<-s.warmers
			token = false
		}
	}
	for {
		s.mu.Lock()
		st := s.prefixes[id]
		if st == nil {
			st = &prefixState{}
			s.prefixes[id] = st
		}
		now := s.now()
		if st.warm && now.Before(st.expires.Add(-margin)) {
			s.mu.Unlock()
			unwait()
			return &ticket{s: s, id: id, ttl: p.TTL, read: true}, nil // fresh settles it once admitted
		}
		if ch := st.warming; ch != nil {
			s.mu.Unlock()
			unwait()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// Cold, or idle for close to its TTL, here: this attempt warms it, once
		// fewer than maxWarmersWaiting warming attempts wait for admission.
		if !token && s.warmers != nil {
			select {
			case s.warmers <- struct{}{}:
				token = true
			default:
				s.mu.Unlock()
				select {
				case s.warmers <- struct{}{}:
					token = true
					continue // look again: another attempt may have warmed it meanwhile
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
		// This attempt warms it, or (shared) asks the store first, the others here
		// waiting as for a warm-up.
		rewarm := st.warm
		st.warm = false
		done := make(chan struct{})
		st.warming = done
		s.mu.Unlock()
		if s.shared != nil {
			left, err := s.shared.claim(ctx, id, p)
			if err != nil || left > 0 { // failed, or warm by another process
				s.notWarming(st, done, left, p.TTL)
				unwait()
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		if rewarm {
			s.rewarmed.Add(1)
		}
		s.warmed.Add(1)
		return &ticket{s: s, id: id, ttl: p.TTL, warmer: true, done: done, waiting: token}, nil
	}
}

// notWarming ends the warming state (its channel done) that an attempt set on st
// while it asked the store, which answered that this process does not warm the
// prefix: warm for left when another process warmed it (0: not known warm).
func (s *cacheSched) notWarming(st *prefixState, done chan struct{}, left, ttl time.Duration) {
	s.mu.Lock()
	if left > 0 {
		now := s.now()
		st.warm, st.expires = true, now.Add(left)
		if left >= ttl-rewarmMargin(ttl) {
			st.refreshed = now
		}
	}
	st.warming = nil
	close(done)
	s.mu.Unlock()
}

// fresh settles, once the ticket's attempt has been admitted, how it is sent, and
// counts a read sent. A read sent refreshes the prefix's TTL from now (and, shared,
// in the store at most once per rewarmMargin). A read whose prefix went cold or
// close to its TTL while the attempt waited for admission (a long wait at a low
// tier) is not sent back to wait for a read's admission again: it warms the
// prefix itself, as a warming ticket from here on (shared, once it holds the
// prefix's claim in the store), or, when another attempt or process is warming
// it, goes as it is (and may write the prefix too). A warming ticket stays one.
func (t *ticket) fresh(ctx context.Context) error {
	if t == nil || !t.read {
		return nil
	}
	s := t.s
	margin := rewarmMargin(t.ttl)
	s.mu.Lock()
	st := s.prefixes[t.id]
	now := s.now()
	if !st.warm || !now.Before(st.expires.Add(-margin)) {
		if st.warming != nil { // another attempt warms it
			s.mu.Unlock()
			s.reads.Add(1)
			return nil
		}
		rewarm := st.warm
		st.warm = false
		done := make(chan struct{})
		st.warming = done // this process's other attempts wait, as for a warm-up
		s.mu.Unlock()
		if s.shared != nil {
			left, mine, err := s.shared.tryClaim(ctx, t.id, t.ttl)
			if err != nil || !mine { // failed, or warm by another process, or being warmed by one
				s.notWarming(st, done, left, t.ttl)
				if err != nil {
					return err
				}
				s.reads.Add(1)
				return nil
			}
		}
		t.done = done
		t.read, t.warmer = false, true
		if rewarm {
			s.rewarmed.Add(1)
		}
		s.warmed.Add(1)
		return nil
	}
	st.expires = now.Add(t.ttl)
	refresh := s.shared != nil && now.Sub(st.refreshed) >= margin
	if refresh {
		st.refreshed = now
	}
	s.mu.Unlock()
	s.reads.Add(1)
	if refresh {
		return s.shared.refresh(ctx, t.id, t.ttl)
	}
	return nil
}

// settle runs fresh once the ticket's attempt att has been admitted, and returns
// the attempt to send. A read turned into its prefix's warming request (the prefix
// went cold while it waited) was admitted for a read, which takes no ITPM; as a
// write it takes the whole prompt's, so it gives that admission back and waits
// again for the whole prompt (unless the read reserved it all: a class whose
// cache reads count toward ITPM). As the warming request it cannot go cold while
// it waits, so this happens once; the prefix's other attempts wait for it meanwhile.
func (t *ticket) settle(ctx context.Context, call *admit.Call, att *admit.Attempt) (*admit.Attempt, error) {
	wasRead := t != nil && t.read
	if err := t.fresh(ctx); err != nil {
		att.Cancel()
		return nil, err
	}
	if !wasRead || !t.warmer {
		return att, nil
	}
	call.ExpectCacheRead(0)
	if call.Need().InputTokens <= att.Cost().InputTokens {
		return att, nil
	}
	att.Cancel()
	return call.Admit(ctx)
}

// admitted gives back the ticket's token of s.warmers once its attempt has been
// admitted, or will not be sent (finish).
func (t *ticket) admitted() {
	if t != nil && t.waiting {
		t.waiting = false
		<-t.s.warmers
	}
}

// warms reports whether the ticket's attempt warms its prefix.
func (t *ticket) warms() bool { return t != nil && t.warmer }

// trace returns ctx with a hook that marks the prefix warm at the answer's first
// byte, for a warming attempt; ctx itself otherwise.
func (t *ticket) trace(ctx context.Context) context.Context {
	if t == nil || !t.warmer {
		return ctx
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: t.started})
}

// started marks a warming attempt's prefix warm and lets the others go.
func (t *ticket) started() {
	t.once.Do(func() {
		s := t.s
		s.mu.Lock()
		st := s.prefixes[t.id]
		st.warm = true
		st.expires = s.now().Add(t.ttl)
		st.warming = nil
		close(t.done)
		s.mu.Unlock()
		t.marked = true
		t.mark = s.shared.mark(t.id, t.ttl) // not waited for here: the answer is being read
	})
}

// finish settles the ticket once its attempt is over (err nil: answered). A
// warming attempt that failed leaves the prefix cold (an API error answer wrote no
// cache), so the next attempt on it warms it; the ones its first byte let go are
// sent all the same (as writes); one answered with an API error after its first
// byte had marked the prefix warm in the store marks it cold there again. An
// attempt never sent (admission refused) passes errNotSent.
func (t *ticket) finish(err error) {
	if t == nil || !t.warmer {
		return
	}
	t.admitted()
	if err == nil {
		t.started()
		t.mark.wait()
		return
	}
	t.once.Do(func() { // failed before its first byte
		s := t.s
		s.mu.Lock()
		s.prefixes[t.id].warming = nil
		close(t.done)
		s.mu.Unlock()
		s.shared.release(t.id)
	})
	t.mark.wait() // before its cold below, and before the attempt ends
	var ae *upstream.APIError
	if errors.As(err, &ae) || errors.Is(err, errNotSent) {
		s := t.s
		s.mu.Lock()
		if st := s.prefixes[t.id]; st.warming == nil {
			st.warm = false
		}
		s.mu.Unlock()
		if t.marked {
			s.shared.cold(t.id)
		}
	}
}

// errNotSent is a ticket's attempt that never went out.
var errNotSent = errors.New("not sent")

// cachePrefix is the prefix req is scheduled by when sent to m: its last
// breakpoint if it is at least the model's minimum cacheable length (catalog
// min_cache_tokens); false for none, or when scheduling is off.
func (r *run) cachePrefix(m *catalog.Model, p cacheprefix.Prefix) (cacheprefix.Prefix, bool) {
	if r.sched == nil || p.Key == (cacheprefix.Key{}) || p.Tokens < r.cat.Class(m).MinCacheTokens {
		return cacheprefix.Prefix{}, false
	}
	return p, true
}

// reserve sets what an attempt reserves for input: the whole estimate, or, for an
// expected cache read, the estimate less the cached prefix (admit.Call.ExpectCacheRead:
// cache reads take no ITPM on current models; they do on the classes marked
// cache_reads_count_itpm).
func (r *run) reserve(call *admit.Call, p cacheprefix.Prefix, t *ticket) {
	if t == nil {
		return
	}
	var read int64
	if t.read {
		read = p.Tokens
	}
	call.ExpectCacheRead(read)
}
