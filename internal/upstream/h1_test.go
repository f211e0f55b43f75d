package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
)

// h1Server is an httptest server that counts the connections it accepted and the
// requests it served.
type h1Server struct {
	*httptest.Server
	conns, reqs atomic.Int64
}

func newH1Server(t *testing.T, h http.HandlerFunc, idle time.Duration) *h1Server {
	t.Helper()
	s := &h1Server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		h(w, r)
	}))
	s.Config.IdleTimeout = idle
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func h1Client(t *testing.T, base string) *http.Client {
	t.Helper()
	u, _ := url.Parse(base)
	c, _, err := Config{APIKey: NewSecret("sk-ant-test"), BaseURL: base}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	rt := newTransport(c, u)
	h1, ok := rt.(*h1Transport)
	if !ok {
		t.Fatalf("transport for %s is %T, want *h1Transport", base, rt)
	}
	t.Cleanup(h1.CloseIdleConnections)
	return &http.Client{Transport: h1}
}

func post(t *testing.T, hc *http.Client, ctx context.Context, u, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return hc.Do(req)
}

// TestH1TransportChosen: plain http without a connection cap gets h1Transport;
// https (the API, over HTTP/2) and a capped pool keep net/http's Transport.
func TestH1TransportChosen(t *testing.T) {
	for _, tc := range []struct {
		base string
		max  int
		h1   bool
	}{{"http://127.0.0.1:1", 0, true}, {"https://api.anthropic.com", 0, false}, {"http://127.0.0.1:1", 8, false}} {
		c, u, err := Config{APIKey: NewSecret("sk-ant-test"), BaseURL: tc.base, MaxConnsPerHost: tc.max}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		_, isH1 := newTransport(c, u).(*h1Transport)
		if isH1 != tc.h1 {
			t.Errorf("%s, MaxConnsPerHost %d: h1Transport %v, want %v", tc.base, tc.max, isH1, tc.h1)
		}
	}
}

// TestH1ReusesConnections: calls one after the other share one connection, and
// concurrent calls open no more connections than are in flight; every body and
// echo arrives intact.
func TestH1ReusesConnections(t *testing.T) {
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"echo":%q,"len":%d}`, b, len(b))
	}, 0)
	hc := h1Client(t, s.URL)
	call := func(i int) error {
		body := fmt.Sprintf("call-%d-%s", i, strings.Repeat("x", i%300))
		resp, err := post(t, hc, context.Background(), s.URL+"/v1/messages", body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf(`{"echo":%q,"len":%d}`, body, len(body)); string(got) != want {
			return fmt.Errorf("call %d: body %q, want %q", i, got, want)
		}
		return nil
	}
	for i := range 200 {
		if err := call(i); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("200 calls one after the other opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32*20)
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				if err := call(g*20 + i); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.conns.Load(); n > 1+32 {
		t.Errorf("32 concurrent callers opened %d connections in all, want at most 33", n)
	}
	if n := s.reqs.Load(); n != 200+640 {
		t.Errorf("server saw %d requests, want 840", n)
	}
}

// TestH1StreamsAsItArrives: a chunked stream's first event reaches the caller
// before the server has written the second.
func TestH1StreamsAsItArrives(t *testing.T) {
	next := make(chan struct{})
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: one\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-next
		fmt.Fprint(w, "event: two\ndata: {}\n\n")
	}, 0)
	hc := h1Client(t, s.URL)
	resp, err := post(t, hc, context.Background(), s.URL+"/v1/messages", "{}")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "event: one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(next) // the second event is written only now
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "event: two") {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

// TestH1ContextEndsBlockedRead: a ctx that ends while the caller waits for the
// answer, or for the rest of a stream, returns at once, and the connection is not
// used again.
func TestH1ContextEndsBlockedRead(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/head" {
			<-release
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, 0)
	hc := h1Client(t, s.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := post(t, hc, ctx, s.URL+"/head", "{}"); err == nil {
		t.Fatal("a call whose ctx ended returned no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the call returned %v after its ctx ended", d)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	resp, err := post(t, hc, ctx2, s.URL+"/stream", "{}")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel2)
	start = time.Now()
	if _, err := io.ReadAll(br); err == nil {
		t.Error("reading a stream whose ctx ended gave no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the read returned %v after its ctx ended", d)
	}
	resp.Body.Close()
	before := s.conns.Load()
	resp, err = post(t, hc, context.Background(), s.URL+"/stream-after", "{}")
	if err == nil {
		resp.Body.Close()
	}
	if s.conns.Load() == before {
		t.Error("a call after two cut ones reused a cut connection")
	}
}

// TestH1RetriesConnectionClosedWhileIdle: the server closes an idle connection;
// the next call on it is sent once more on a new connection and succeeds, and the
// server sees each call once.
func TestH1RetriesConnectionClosedWhileIdle(t *testing.T) {
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok")
	}, 30*time.Millisecond)
	hc := h1Client(t, s.URL)
	for i := range 3 {
		resp, err := post(t, hc, context.Background(), s.URL+"/v1/messages", `{"n":1}`)
		if err != nil {
			t.Fatalf("call %d after the server closed the idle connection: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("call %d: %q, %v", i, b, err)
		}
		time.Sleep(200 * time.Millisecond) // the server's idle timeout passes
	}
	if c, r := s.conns.Load(), s.reqs.Load(); c != 3 || r != 3 {
		t.Errorf("%d connections and %d requests for 3 calls, each after an idle close; want 3 and 3", c, r)
	}
}

// TestH1EarlyCloseAndConnectionClose: a body closed before its end returns at
// once (what is left of a stream may be long) and its connection is not reused,
// nor is one the server answered with Connection: close.
func TestH1EarlyCloseAndConnectionClose(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/endless":
			for {
				fmt.Fprint(w, "event: ping\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-stop:
					return
				case <-r.Context().Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		case "/close":
			w.Header().Set("Connection", "close")
		}
		fmt.Fprint(w, "ok")
	}, 0)
	hc := h1Client(t, s.URL)
	resp, err := post(t, hc, context.Background(), s.URL+"/endless", "{}")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp.Body.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("closing an endless stream took %v", d)
	}
	for _, p := range []string{"/close", "/plain", "/plain"} {
		resp, err := post(t, hc, context.Background(), s.URL+p, "{}")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// endless, then /close on a new one, then /plain on a new one, reused by the last.
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (none after a cut stream or a Connection: close reused)", n)
	}
}

// TestH1Trace: the hooks the client relies on (a request written: maybe
// delivered; the answer's first byte: a prompt cache entry readable) are called.
func TestH1Trace(t *testing.T) {
	s := newH1Server(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }, 0)
	hc := h1Client(t, s.URL)
	var wroteHeaders, wroteRequest, first atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteHeaders:         func() { wroteHeaders.Store(true) },
		WroteRequest:         func(i httptrace.WroteRequestInfo) { wroteRequest.Store(i.Err == nil) },
		GotFirstResponseByte: func() { first.Store(true) },
	})
	resp, err := post(t, hc, ctx, s.URL+"/", "{}")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !wroteHeaders.Load() || !wroteRequest.Load() || !first.Load() {
		t.Errorf("trace: WroteHeaders %v, WroteRequest %v, GotFirstResponseByte %v; want all", wroteHeaders.Load(), wroteRequest.Load(), first.Load())
	}
	// Nothing listening: no hook says the request was written.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	wroteHeaders.Store(false)
	if _, err := post(t, hc, ctx, dead+"/", "{}"); err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	if wroteHeaders.Load() {
		t.Error("WroteHeaders called for a call that never connected")
	}
}

// BenchmarkTransport is a Messages round trip against the emulator on loopback
// through h1Transport and through net/http's Transport set up as newTransport
// sets it up for https, in one run: the cost of a call on each, serial (one call
// at a time: latency) and from 32 goroutines (throughput, time per call).
func BenchmarkTransport(b *testing.B) {
	const key = "sk-ant-api03-h1-bench-key-0123456789abcdef"
	em := emulator.StartTB(b, emulator.Config{Tier: "unlimited", APIKeys: []string{key}})
	cfg, u, err := Config{APIKey: NewSecret(key), BaseURL: em.URL}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	h1 := newTransport(cfg, u).(*h1Transport)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h1", h1}, {"nethttp", h1.fallback}} {
		c, err := New(Config{BaseURL: em.URL, APIKey: NewSecret(key), HTTPClient: &http.Client{Transport: tc.rt}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Messages(context.Background(), []byte(benchParams)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Messages(context.Background(), []byte(benchParams)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

const benchParams = `{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Summarise the benefits of token buckets."}]}`
