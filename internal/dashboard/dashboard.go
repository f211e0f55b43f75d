package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultEvery = 2 * time.Second
	DefaultKeep  = 30 * time.Minute
)

// SeriesPath is where the page reads the samples; the page is served at "/".
const SeriesPath = "/_clade/dashboard/series"

// assetPrefix is where the page's script and style sheet are served.
const assetPrefix = "/_clade/dashboard/"

//go:embed static/page.html static/app.js static/app.css
var static embed.FS

// Config configures a Dashboard. Source is required.
type Config struct {
	// Source gives the numbers of each sample.
	Source Source
	// Title names the process on the page ("clade serve", "clade run in.jsonl").
	Title string
	// Every is the sample interval. Default DefaultEvery (2 s).
	Every time.Duration
	// Keep is how much history the ring holds. Default DefaultKeep (30 minutes).
	Keep time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Dashboard samples a Source into a ring and serves the page and the series.
// It is an http.Handler for "/" (the page), SeriesPath and the page's assets.
type Dashboard struct {
	cfg  Config
	mux  *http.ServeMux
	mu   sync.Mutex
	ring []Sample // capacity Keep/Every; the oldest at head once full
	head int
	seq  int64
	// polledAt is when a page last read the series, fetched the highest sample
	// number a read returned; fetch is closed (and replaced) at each read, to
	// wake Final.
	polledAt time.Time
	fetched  int64
	fetch    chan struct{}
}

// New returns a Dashboard for cfg.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Source == nil {
		return nil, errors.New("dashboard: Source is required")
	}
	if cfg.Every < 0 || cfg.Keep < 0 {
		return nil, fmt.Errorf("dashboard: Every %s and Keep %s must not be negative (0: the default)", cfg.Every, cfg.Keep)
	}
	if cfg.Every == 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Keep < cfg.Every {
		return nil, fmt.Errorf("dashboard: Keep %s is shorter than Every %s", cfg.Keep, cfg.Every)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Title == "" {
		cfg.Title = "clade"
	}
	d := &Dashboard{cfg: cfg, mux: http.NewServeMux(), ring: make([]Sample, 0, int(cfg.Keep/cfg.Every)), fetch: make(chan struct{})}
	d.mux.HandleFunc("GET /{$}", d.page)
	d.mux.HandleFunc("GET "+SeriesPath, d.series)
	d.mux.HandleFunc("GET "+assetPrefix+"app.js", d.asset("static/app.js", "text/javascript; charset=utf-8"))
	d.mux.HandleFunc("GET "+assetPrefix+"app.css", d.asset("static/app.css", "text/css; charset=utf-8"))
	return d, nil
}

// Run samples the source now and then every Every until ctx ends; it returns nil.
func (d *Dashboard) Run(ctx context.Context) error {
	d.Record(ctx, d.cfg.Now())
	t := time.NewTicker(d.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.Record(ctx, d.cfg.Now())
		}
	}
}

// Record takes one sample of the source at now into the ring, dropping the oldest
// when it is full, and returns it.
func (d *Dashboard) Record(ctx context.Context, now time.Time) Sample {
	s := d.cfg.Source.Sample(ctx, now)
	s.At = now.UTC().Truncate(time.Millisecond)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	s.Seq = d.seq
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, s)
	} else {
		d.ring[d.head] = s
		d.head = (d.head + 1) % len(d.ring)
	}
	return s
}

// Final records a last sample (the source's numbers at the end) and, when a page
// read the series in the last 3 × Every, waits until a page has read that sample,
// at most 3 × Every (6 s by default): a page open on a run that ends then shows
// its end (done, 100 %) rather than the sample before. It returns at once when no
// page is polling.
func (d *Dashboard) Final(ctx context.Context) {
	grace := 3 * d.cfg.Every
	last := d.Record(ctx, d.cfg.Now())
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		d.mu.Lock()
		watched := !d.polledAt.IsZero() && d.cfg.Now().Sub(d.polledAt) < grace
		read, fetch := d.fetched >= last.Seq, d.fetch
		d.mu.Unlock()
		if !watched || read {
			return
		}
		select {
		case <-fetch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Series is the JSON of SeriesPath.
type Series struct {
	Title        string   `json:"title"`
	EverySeconds float64  `json:"every_seconds"`
	KeepSeconds  float64  `json:"keep_seconds"`
	Samples      []Sample `json:"samples"`
}

// Samples returns the samples in the ring with Seq above after, oldest first.
func (d *Dashboard) Samples(after int64) []Sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Sample, 0, len(d.ring))
	for i := range d.ring {
		s := d.ring[(d.head+i)%len(d.ring)]
		if s.Seq > after {
			out = append(out, s)
		}
	}
	return out
}

func (d *Dashboard) series(w http.ResponseWriter, r *http.Request) {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "after: a sample number (a non-negative integer)", http.StatusBadRequest)
			return
		}
		after = n
	}
	samples := d.Samples(after)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	err := json.NewEncoder(w).Encode(Series{Title: d.cfg.Title, EverySeconds: d.cfg.Every.Seconds(),
		KeepSeconds: d.cfg.Keep.Seconds(), Samples: samples})
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.polledAt = d.cfg.Now()
	if len(samples) > 0 {
		d.fetched = max(d.fetched, samples[len(samples)-1].Seq)
	}
	close(d.fetch)
	d.fetch = make(chan struct{})
}

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	d.asset("static/page.html", "text/html; charset=utf-8")(w, r)
}

func (d *Dashboard) asset(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := static.ReadFile(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(b)
	}
}

// ServeHTTP serves the page at "/", the series at SeriesPath and the page's
// assets; anything else is a 404.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// shutdownWait bounds how long Serve, once its ctx has ended, waits for the
// responses being written.
const shutdownWait = 2 * time.Second

// Serve samples d and serves it on ln until ctx ends, then closes the listener,
// lets the responses being written finish (at most shutdownWait) and returns
// (nil, or the listener's error). Give it a loopback listener: the
// page has no authentication.
func Serve(ctx context.Context, ln net.Listener, d *Dashboard) error {
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.Run(ctx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		// A response being written (a page's read of Final's sample) ends first.
		sctx, stop := context.WithTimeout(context.Background(), shutdownWait)
		srv.Shutdown(sctx)
		stop()
		srv.Close()
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
			err = e
		}
	}
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// Live is a run's dashboard on its own listener (clade run --dashboard).
type Live struct {
	feed *Feed
	dash *Dashboard
	url  string
	stop context.CancelFunc
	done chan error
}

// Listen serves a dashboard titled title on addr (HOST:PORT; give a loopback
// address, 127.0.0.1:PORT: the page has no authentication), sampling the Feed
// the run's display sets, until Close.
func Listen(addr, title string) (*Live, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	feed := &Feed{}
	d, err := New(Config{Source: feed, Title: title})
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Live{feed: feed, dash: d, url: "http://" + ln.Addr().String() + "/", stop: cancel, done: make(chan error, 1)}
	go func() { l.done <- Serve(ctx, ln, d) }()
	return l, nil
}

// Feed is what the run's display sets (nil for a nil Live: no dashboard).
func (l *Live) Feed() *Feed {
	if l == nil {
		return nil
	}
	return l.feed
}

// URL is the page's address.
func (l *Live) URL() string { return l.url }

// Close takes the feed's last numbers (Dashboard.Final: a page open on the run
// gets them, up to 6 s later), stops serving and returns once the listener is
// closed.
func (l *Live) Close() error {
	l.dash.Final(context.Background())
	l.stop()
	return <-l.done
}
