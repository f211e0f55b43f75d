package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/internal/dashboard"
)

// counter is a source whose samples count its calls in InFlight.
type counter struct{ n int }

func (c *counter) Sample(ctx context.Context, now time.Time) dashboard.Sample {
	c.n++
	return dashboard.Sample{InFlight: c.n}
}

func TestRingKeepsTheLastSamples(t *testing.T) {
	t.Parallel()
	d, err := dashboard.New(dashboard.Config{Source: &counter{}, Every: 2 * time.Second, Keep: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 21, 0, 0, 123456789, time.UTC)
	for i := range 12 {
		d.Record(context.Background(), at.Add(time.Duration(i)*2*time.Second))
	}
	got := d.Samples(0)
	if len(got) != 5 || got[0].Seq != 8 || got[4].Seq != 12 || got[4].InFlight != 12 {
		t.Fatalf("Samples(0) = %d samples, seq %d..%d, want the last 5 (8..12)", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	if got[0].At.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("sample time %v, want whole milliseconds", got[0].At)
	}
	if after := d.Samples(10); len(after) != 2 || after[0].Seq != 11 {
		t.Errorf("Samples(10) = %+v, want samples 11 and 12", after)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  dashboard.Config
	}{
		{"no source", dashboard.Config{}},
		{"negative every", dashboard.Config{Source: &counter{}, Every: -time.Second}},
		{"keep under every", dashboard.Config{Source: &counter{}, Every: time.Minute, Keep: time.Second}},
	} {
		if _, err := dashboard.New(tc.cfg); err == nil {
			t.Errorf("New(%s) = nil error, want an error", tc.name)
		}
	}
}

func TestWaitQuantiles(t *testing.T) {
	t.Parallel()
	var h dashboard.WaitHistograms
	for i := range 100 {
		h.Observe("a", time.Duration(i+1)*10*time.Millisecond) // 10 ms .. 1 s
	}
	h.Observe("b", 3*time.Second)
	got := h.Take()
	a := got["a"]
	// A quantile is within one bucket (19 %) above the true one, never above the longest wait.
	if a.N != 100 || a.P50 < 0.5 || a.P50 > 0.5*1.19 || a.P99 < 0.99 || a.P99 > 1 {
		t.Errorf("a = %+v, want N 100, p50 in [0.5, 0.6], p99 in [0.99, 1]", a)
	}
	if b := got["b"]; b.N != 1 || b.P50 != 3 || b.P99 != 3 {
		t.Errorf("b = %+v, want one wait of 3 s", b)
	}
	if again := h.Take(); len(again) != 0 {
		t.Errorf("second Take = %+v, want nothing (the interval starts afresh)", again)
	}
}

// TestHandlerServesEverythingItself checks that the page, its script and its style
// come from the handler and reference nothing elsewhere (the gateway may have no
// internet), and that the series is JSON.
func TestHandlerServesEverythingItself(t *testing.T) {
	t.Parallel()
	d, err := dashboard.New(dashboard.Config{Source: &counter{}, Title: "clade test"})
	if err != nil {
		t.Fatal(err)
	}
	d.Record(context.Background(), time.Now())
	srv := httptest.NewServer(d)
	defer srv.Close()
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?http`)
	for _, tc := range []struct{ path, contentType string }{
		{"/", "text/html"}, {"/_clade/dashboard/app.js", "text/javascript"}, {"/_clade/dashboard/app.css", "text/css"},
		{dashboard.SeriesPath, "application/json"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) {
			t.Errorf("GET %s = %d %s, want 200 %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contentType)
		}
		if m := external.Find(b); m != nil && tc.path != dashboard.SeriesPath {
			t.Errorf("GET %s references %q, want nothing outside the handler", tc.path, m)
		}
		if tc.path == dashboard.SeriesPath {
			var s dashboard.Series
			if err := json.Unmarshal(b, &s); err != nil || s.Title != "clade test" || len(s.Samples) != 1 || s.EverySeconds != 2 {
				t.Errorf("series = %s (%v), want the title, one sample, every 2 s", b, err)
			}
		}
	}
	for _, p := range []string{"/nope", dashboard.SeriesPath + "?after=x"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 4 {
			t.Errorf("GET %s = %d, want a 4xx", p, resp.StatusCode)
		}
	}
}

// TestFeedPrefersRealtime: a hybrid run's realtime workers count the whole run, so
// while they feed, their sample is shown and the batches' is not.
func TestFeedPrefersRealtime(t *testing.T) {
	t.Parallel()
	var f dashboard.Feed
	if s := f.Sample(context.Background(), time.Now()); s.Progress != nil {
		t.Fatalf("empty feed = %+v, want no progress", s)
	}
	f.Set(dashboard.Sample{Progress: &dashboard.Progress{Mode: "batch", Done: 1}})
	if s := f.Sample(context.Background(), time.Now()); s.Progress.Mode != "batch" {
		t.Errorf("feed = %+v, want the batches' sample", s.Progress)
	}
	f.Set(dashboard.Sample{Progress: &dashboard.Progress{Mode: "realtime", Done: 5}})
	f.Set(dashboard.Sample{Progress: &dashboard.Progress{Mode: "batch", Done: 2}})
	if s := f.Sample(context.Background(), time.Now()); s.Progress.Mode != "realtime" || s.Progress.Done != 5 {
		t.Errorf("feed = %+v, want the realtime sample while it is fresh", s.Progress)
	}
	var none *dashboard.Feed
	none.Set(dashboard.Sample{}) // no dashboard: nothing happens
}

// TestFinalWaitsForAWatchingPage: Final returns at once when no page polls; when
// one does, it waits until a read of the series carries the final sample, or 3 ×
// Every when no read comes.
func TestFinalWaitsForAWatchingPage(t *testing.T) {
	t.Parallel()
	poll := func(d *dashboard.Dashboard, after int64) dashboard.Series {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest("GET", dashboard.SeriesPath+"?after="+strconv.FormatInt(after, 10), nil))
		var s dashboard.Series
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatalf("series: %v", err)
		}
		return s
	}
	synctest.Test(t, func(t *testing.T) {
		d, _ := dashboard.New(dashboard.Config{Source: &counter{}})
		d.Record(t.Context(), time.Now())
		start := time.Now()
		d.Final(t.Context())
		if waited := time.Since(start); waited != 0 {
			t.Errorf("Final with no page waited %s, want 0", waited)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		d, _ := dashboard.New(dashboard.Config{Source: &counter{}})
		d.Record(t.Context(), time.Now())
		seen := poll(d, 0).Samples[0].Seq
		ended := make(chan time.Time, 1)
		start := time.Now()
		go func() { d.Final(t.Context()); ended <- time.Now() }()
		time.Sleep(time.Second) // the page's next poll comes a second later
		synctest.Wait()
		select {
		case <-ended:
			t.Fatal("Final returned before the watching page read the final sample")
		default:
		}
		got := poll(d, seen).Samples
		if len(got) != 1 || got[0].Seq != seen+1 {
			t.Fatalf("the page's read after Final: %+v, want the final sample %d", got, seen+1)
		}
		if at := <-ended; at.Sub(start) != time.Second {
			t.Errorf("Final returned %s after it started, want 1s (at the page's read)", at.Sub(start))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		d, _ := dashboard.New(dashboard.Config{Source: &counter{}})
		d.Record(t.Context(), time.Now())
		poll(d, 0)
		start := time.Now()
		d.Final(t.Context())
		if waited := time.Since(start); waited != 3*dashboard.DefaultEvery {
			t.Errorf("Final with a page that stopped polling waited %s, want 3 × Every (%s)", waited, 3*dashboard.DefaultEvery)
		}
	})
}

// TestLiveCloseLetsAPageReadTheEnd: a page polling a run's dashboard (Live) gets
// the numbers the run set last, before Close, even between two sample ticks
// (it polls back to back, where a browser waits Every).
func TestLiveCloseLetsAPageReadTheEnd(t *testing.T) {
	t.Parallel()
	live, err := dashboard.Listen("127.0.0.1:0", "clade run test")
	if err != nil {
		t.Fatal(err)
	}
	live.Feed().Set(dashboard.Sample{Progress: &dashboard.Progress{Mode: "batch", Done: 1, Total: 2}})
	polled := make(chan struct{})
	last := make(chan int64, 1)
	go func() { // the page: it polls until the dashboard is gone
		var after, done int64
		defer func() { last <- done }()
		for i := 0; ; i++ {
			resp, err := http.Get(live.URL() + strings.TrimPrefix(dashboard.SeriesPath, "/") + "?after=" + strconv.FormatInt(after, 10))
			if err != nil {
				return
			}
			var s dashboard.Series
			err = json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
			if err != nil {
				return
			}
			for _, x := range s.Samples {
				after = x.Seq
				if x.Progress != nil { // nil: sampled before the first Set
					done = x.Progress.Done
				}
			}
			if i == 0 {
				close(polled)
			}
		}
	}()
	<-polled
	live.Feed().Set(dashboard.Sample{Progress: &dashboard.Progress{Mode: "batch", Done: 2, Total: 2}})
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if done := <-last; done != 2 {
		t.Errorf("the page's last sample shows %d/2 done, want 2/2 (the run's end)", done)
	}
}
