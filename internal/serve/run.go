package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// RunOptions shape Gateway.Run's shutdown.
type RunOptions struct {
	// ShutdownTimeout bounds the first phase of the shutdown: how long calls in
	// flight may take to finish before they are cut off. Required (> 0).
	ShutdownTimeout time.Duration
	// Abort, closed during the first phase (a second Ctrl-C), cuts the calls in
	// flight off at once. Nil: only the timeout does.
	Abort <-chan struct{}
	// OnShutdown, when set, is called as the first phase starts (to tell the
	// operator that no new call is taken).
	OnShutdown func()
	// BatchReconcile is how often pending batch holds are reconciled with the
	// API (budget_batch.go); 0: DefaultBatchReconcile.
	BatchReconcile time.Duration
}

// ErrCutOff is returned by Run when calls still in flight at the end of the
// shutdown's first phase were cut off.
var ErrCutOff = errors.New("calls in flight cut off at shutdown")

// Run serves the gateway on ln until ctx ends, then shuts down in two phases: it
// takes no new call and waits for the calls in flight (idle connections close at
// once), until they have all finished, Abort is closed or ShutdownTimeout passes;
// then it cuts off the calls left. It returns only after every call, cut off or not,
// has settled its reservation, so the limiter's backend (Redis) can be closed after
// it. Idle client connections are closed after 2 minutes; request headers must
// arrive within 10 s.
func (g *Gateway) Run(ctx context.Context, ln net.Listener, opt RunOptions) error {
	if opt.ShutdownTimeout <= 0 {
		return errors.New("serve: RunOptions.ShutdownTimeout must be positive")
	}
	// handlers counts the calls being answered: Run returns after the last one.
	var handlers sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			g.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // SDKs keep connections alive; idle ones are not kept for ever
	}
	defer g.sampleDashboard(ctx)() // the dashboard's history, while the gateway serves
	// Batches' spend, while the gateway serves (budget_batch.go).
	defer g.reconcileBatches(ctx, opt.BatchReconcile)()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if opt.OnShutdown != nil {
		opt.OnShutdown()
	}
	sctx, cancel := context.WithTimeout(context.Background(), opt.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-opt.Abort:
			cancel()
		case <-sctx.Done():
		}
	}()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	<-errc
	handlers.Wait() // after Close, cut-off calls end as their connections close
	g.WaitSettled()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%w: %w", ErrCutOff, err)
	}
	return nil
}
