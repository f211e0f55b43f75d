package upstream

// h1Transport carries calls to a plain http:// upstream (the emulator, a proxy on
// the same network) over HTTP/1.1 with the request written and the response read
// on the goroutine that makes the call.
//
// net/http's Transport gives each connection a read loop and a write loop and
// hands every request and response between them and the caller over channels:
// three goroutines woken per call, where this one wakes none. On a loaded machine
// each wake-up may wait for a CPU, which shows in a gateway's tail latency (clade
// serve relays every call). https upstreams (the API itself, over HTTP/2) keep
// net/http's Transport.
//
// Connections are reused while their answers are read to the end; an answer
// closed early, a "Connection: close" or an error closes its connection. A call
// on a reused connection that gets no byte of an answer because the server had
// closed the connection while it sat idle is sent once more on a new connection,
// as net/http does for requests it knows were not processed.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type h1Transport struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per host
	idleTimeout time.Duration // an idle connection older than this is closed
	fallback    http.RoundTripper

	mu     sync.Mutex
	idle   map[string][]*h1Conn // newest last
	sweep  *time.Timer
	closed bool
}

type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	read   int64 // bytes read from nc, for "did the server answer at all"
	idleAt time.Time
	reused bool
}

// Read counts what the connection has read (the bufio.Reader reads through it).
func (pc *h1Conn) Read(p []byte) (int, error) {
	n, err := pc.nc.Read(p)
	pc.read += int64(n)
	return n, err
}

func newH1Transport(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int, idleTimeout time.Duration, fallback http.RoundTripper) *h1Transport {
	return &h1Transport{dial: dial, maxIdle: maxIdle, idleTimeout: idleTimeout, fallback: fallback, idle: map[string][]*h1Conn{}}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for retried := false; ; retried = true {
		pc, err := t.get(ctx, addr)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		resp, err := t.exchange(ctx, pc, addr, req)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Closed while idle: the server read nothing of this call.
		if !retried && pc.reused && pc.read == 0 && staleConn(err) && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) {
			if req.GetBody != nil {
				if req.Body, err = req.GetBody(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return nil, err
	}
}

// staleConn is an error a connection the server closed while idle gives.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// exchange writes req on pc and reads the answer's head. On error pc is closed.
func (t *h1Transport) exchange(ctx context.Context, pc *h1Conn, addr string, req *http.Request) (*http.Response, error) {
	// A ctx that ends interrupts whatever blocks on the connection, until the
	// answer's body is done with.
	stop := context.AfterFunc(ctx, func() { pc.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.nc.Close()
		return nil, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	pc.read = 0
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if trace != nil && trace.WroteHeaders != nil {
		trace.WroteHeaders()
	}
	err := pc.bw.Flush()
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
	if err != nil {
		return fail(err)
	}
	if _, err := pc.br.Peek(1); err != nil {
		return fail(err)
	}
	if trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	var resp *http.Response
	for {
		if resp, err = http.ReadResponse(pc.br, req); err != nil {
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp.Body.Close() // a 1xx has no body
	}
	b := &h1Body{t: t, pc: pc, addr: addr, stop: stop, rc: resp.Body,
		reuse: !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1) && resp.StatusCode != http.StatusSwitchingProtocols}
	if resp.Body == http.NoBody {
		b.release(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// get returns an idle connection to addr, or a new one.
func (t *h1Transport) get(ctx context.Context, addr string) (*h1Conn, error) {
	now := time.Now()
	t.mu.Lock()
	for l := t.idle[addr]; len(l) > 0; l = t.idle[addr] {
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[addr] = l[:len(l)-1]
		if now.Sub(pc.idleAt) < t.idleTimeout && pc.br.Buffered() == 0 {
			t.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		go pc.nc.Close()
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{nc: nc}
	pc.br = bufio.NewReaderSize(pc, 16<<10)
	pc.bw = bufio.NewWriterSize(nc, 16<<10)
	return pc, nil
}

// put keeps pc for reuse, or closes it when the pool is full or closed.
func (t *h1Transport) put(addr string, pc *h1Conn) {
	pc.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle[addr]) >= t.maxIdle {
		t.mu.Unlock()
		pc.nc.Close()
		return
	}
	t.idle[addr] = append(t.idle[addr], pc)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
	}
	t.mu.Unlock()
}

// sweepIdle closes the connections idle for longer than idleTimeout, and runs again
// while any remain.
func (t *h1Transport) sweepIdle() {
	now := time.Now()
	var old []*h1Conn
	t.mu.Lock()
	t.sweep = nil
	left := false
	for addr, l := range t.idle {
		keep := l[:0]
		for _, pc := range l {
			if now.Sub(pc.idleAt) >= t.idleTimeout {
				old = append(old, pc)
			} else {
				keep = append(keep, pc)
			}
		}
		clear(l[len(keep):])
		t.idle[addr] = keep
		left = left || len(keep) > 0
	}
	if left && !t.closed {
		t.sweep = time.AfterFunc(t.idleTimeout/2, t.sweepIdle)
	}
	t.mu.Unlock()
	for _, pc := range old {
		pc.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections, here and in the fallback.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			pc.nc.Close()
		}
	}
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// h1Body is an answer's body; read to its end, it gives its connection back.
type h1Body struct {
	t     *h1Transport
	pc    *h1Conn
	addr  string
	stop  func() bool
	rc    io.ReadCloser
	reuse bool
	done  atomic.Bool
	once  sync.Once
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

// Close before the end closes the connection: what is left of a stream may be long.
func (b *h1Body) Close() error {
	b.release(false)
	return nil
}

func (b *h1Body) release(reuse bool) {
	b.once.Do(func() {
		b.done.Store(true)
		// stop reports false when ctx has ended and set the deadline.
		if b.stop() && reuse && b.reuse {
			b.t.put(b.addr, b.pc)
			return
		}
		b.pc.nc.Close()
	})
}
