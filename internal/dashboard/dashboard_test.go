package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
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
