package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// slowMarks is a warmStore whose MarkCacheWarm waits until release is closed,
// having said so on entered, and whose other writes are recorded in calls.
type slowMarks struct {
	warmStore
	entered, release chan struct{}

	mu    sync.Mutex
	calls []string
}

func newSlowMarks(st warmStore) *slowMarks {
	return &slowMarks{warmStore: st, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *slowMarks) record(call string) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}

func (s *slowMarks) recorded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *slowMarks) MarkCacheWarm(ctx context.Context, p jobs.CachePrefix, worker string, ttl time.Duration) error {
	s.entered <- struct{}{}
	<-s.release
	defer s.record("mark")
	return s.warmStore.MarkCacheWarm(ctx, p, worker, ttl)
}

func (s *slowMarks) ColdCacheWarm(ctx context.Context, p jobs.CachePrefix) error {
	s.record("cold")
	return s.warmStore.ColdCacheWarm(ctx, p)
}

// TestSlowStoreMarkDoesNotDelayTheAnswer: the warming answer's first byte marks
// its prefix warm in the store, but a store write that does not return (here,
// until the test lets it) does not hold up reading the answer: the whole answer
// is read while the write is blocked. The attempt's end waits for the write, and
// the store then has the prefix warm for the other processes.
func TestSlowStoreMarkDoesNotDelayTheAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, workers := workerStore(t, 1)
	slow := newSlowMarks(st)
	released := sync.OnceFunc(func() { close(slow.release) })
	defer released() // a failed test lets the write go too
	s := newCacheSched(time.Now)
	s.share(slow, 1, workers[0], 0, 0, nil)
	p := cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 2000, TTL: 5 * time.Minute}
	tk, err := s.acquire(ctx, "m", p)
	if err != nil || !tk.warmer {
		t.Fatalf("acquire = %+v, %v; want a warming ticket", tk, err)
	}

	const answer = `{"type":"message","content":[{"type":"text","text":"done"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusOK)
		rw.(http.Flusher).Flush() // the first byte
		io.WriteString(rw, answer)
	}))
	defer srv.Close()
	type read struct {
		body []byte
		err  error
	}
	done := make(chan read, 1)
	go func() {
		req, _ := http.NewRequestWithContext(tk.trace(ctx), http.MethodPost, srv.URL, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- read{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- read{b, err}
	}()
	guard := time.NewTimer(time.Minute) // a hook that waits for the store never lets the answer through
	defer guard.Stop()
	select {
	case <-slow.entered: // the precondition: the mark is in flight, and blocked
	case <-guard.C:
		t.Fatal("the first byte did not start the store write")
	}
	select {
	case r := <-done:
		if r.err != nil || string(r.body) != answer {
			t.Fatalf("answer read while the store write was blocked = %q, %v; want %q", r.body, r.err, answer)
		}
	case <-guard.C:
		t.Fatal("the answer was not read while the store write was blocked: the hook waits for the store")
	}
	if got := slow.recorded(); len(got) != 0 {
		t.Fatalf("store writes done before the mark was let go: %v, want none (the precondition)", got)
	}
	released()
	tk.finish(nil) // waits for the mark
	key := jobs.CachePrefix{RunID: 1, Model: "m", Key: p.Key.String()}
	if c, err := st.CacheWarmState(ctx, key, "another process"); err != nil || c.WarmFor < 4*time.Minute || c.Claimed {
		t.Errorf("CacheWarmState after the attempt = %+v, %v; want warm for about 5m, unclaimed", c, err)
	}
}

// fakeWarmth is an in-memory warmStore that grants every claim.
type fakeWarmth struct{}

func (fakeWarmth) ClaimCacheWarm(context.Context, jobs.CachePrefix, string, time.Duration, time.Duration) (jobs.CacheWarmth, error) {
	return jobs.CacheWarmth{Mine: true}, nil
}
func (fakeWarmth) CacheWarmState(context.Context, jobs.CachePrefix, string) (jobs.CacheWarmth, error) {
	return jobs.CacheWarmth{}, nil
}
func (fakeWarmth) RefreshCacheWarm(context.Context, jobs.CachePrefix, time.Duration) error {
	return nil
}
func (fakeWarmth) MarkCacheWarm(context.Context, jobs.CachePrefix, string, time.Duration) error {
	return nil
}
func (fakeWarmth) ReleaseCacheWarm(context.Context, jobs.CachePrefix, string) error { return nil }
func (fakeWarmth) ColdCacheWarm(context.Context, jobs.CachePrefix) error            { return nil }

// TestStoreWritesOfAnAttemptInOrder: a warming attempt answered with an API error
// after its first byte marks its prefix cold in the store only once the first
// byte's mark (written off the hook's goroutine) is in: warm, then cold, never
// the reverse, which would leave the prefix warm for the other processes. Its end
// waits for the mark.
func TestStoreWritesOfAnAttemptInOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		slow := newSlowMarks(fakeWarmth{})
		released := sync.OnceFunc(func() { close(slow.release) })
		defer released() // a failed test lets the write go too
		s := newCacheSched(time.Now)
		s.share(slow, 1, "w", 0, 0, nil)
		tk, err := s.acquire(t.Context(), "m", cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 2000, TTL: 5 * time.Minute})
		if err != nil || !tk.warmer {
			t.Fatalf("acquire = %+v, %v; want a warming ticket", tk, err)
		}
		tk.started()
		<-slow.entered // the mark is in flight
		finished := make(chan struct{})
		go func() {
			tk.finish(&upstream.APIError{Status: 529})
			close(finished)
		}()
		synctest.Wait() // the mark blocked; finish waiting for it, or done
		if got := slow.recorded(); len(got) != 0 {
			t.Fatalf("while the mark is in flight the store got %v, want nothing (cold must follow the mark)", got)
		}
		select {
		case <-finished:
			t.Fatal("finish returned while its mark was in flight, want it to wait")
		default:
		}
		released()
		<-finished
		if got, want := slow.recorded(), []string{"mark", "cold"}; !slices.Equal(got, want) {
			t.Errorf("store writes = %v, want %v", got, want)
		}
	})
}

// failingMarks is a warmStore whose MarkCacheWarm fails.
type failingMarks struct{ fakeWarmth }

func (failingMarks) MarkCacheWarm(context.Context, jobs.CachePrefix, string, time.Duration) error {
	return errors.New("database is locked")
}

// TestFailedMarkIsLogged: a first byte's mark that the store refuses is not lost
// with its goroutine: it is logged, as the other warmth writes are, by the time
// the attempt has ended.
func TestFailedMarkIsLogged(t *testing.T) {
	t.Parallel()
	var logged bytes.Buffer
	var mu sync.Mutex
	s := newCacheSched(time.Now)
	s.share(failingMarks{}, 1, "w", 0, 0, slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, nil)))
	tk, err := s.acquire(t.Context(), "m", cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 2000, TTL: 5 * time.Minute})
	if err != nil || !tk.warmer {
		t.Fatalf("acquire = %+v, %v; want a warming ticket", tk, err)
	}
	tk.started()
	tk.finish(nil)
	mu.Lock()
	defer mu.Unlock()
	if got := logged.String(); !strings.Contains(got, "record a warm cache prefix") || !strings.Contains(got, "database is locked") {
		t.Errorf("log after the attempt = %q, want the failed mark and its error", got)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
