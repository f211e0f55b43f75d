package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// Running is an emulator serving on a local port.
type Running struct {
	// URL is the base URL to give a client, e.g. http://127.0.0.1:41234.
	URL    string
	Server *Server
	http   *http.Server
	done   chan error
}

// Start serves a new emulator for cfg on a free loopback port. Close it when done.
func Start(cfg Config) (*Running, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return serveOn(ln, cfg)
}

// StartTB starts an emulator for a test or benchmark and closes it at cleanup. It fails
// the test if the emulator cannot start.
func StartTB(tb testing.TB, cfg Config) *Running {
	tb.Helper()
	r, err := Start(cfg)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func serveOn(ln net.Listener, cfg Config) (*Running, error) {
	s, err := New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	r := &Running{
		URL:    "http://" + ln.Addr().String(),
		Server: s,
		http:   &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second},
		done:   make(chan error, 1),
	}
	s.batches.start()
	go func() { r.done <- r.http.Serve(ln) }()
	return r, nil
}

// Close stops serving at once and stops the batch engine.
func (r *Running) Close() error {
	err := r.http.Close()
	<-r.done
	r.Server.batches.stop()
	return err
}

// Run serves s on addr until ctx ends, then shuts down gracefully (in-flight requests
// get up to 10 s). It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.batches.start()
	defer s.batches.stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := hs.Shutdown(sctx)
		<-errc
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
