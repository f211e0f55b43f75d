package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
)

// sharedLimiter returns a limiter whose buckets live in the Redis at rawURL under
// namespace, shared with every clade process given the same two, and a function that
// closes its connection; command ("clade run") starts its usage hints; background
// says the command settles its calls off their path (admit.RedisConfig.Background). Redis must answer at start: a wrong URL fails here rather
// than leaving the run waiting (the backend fails closed during an outage). Neither
// the errors nor the logs contain the URL's password.
func sharedLimiter(ctx context.Context, command, rawURL, namespace string, background bool, cat *catalog.Catalog, tier string, concurrency int, log *slog.Logger) (*admit.Limiter, func(), error) {
	shown := admit.RedactURL(rawURL)
	opts, err := admit.ParseRedisURL(rawURL)
	if err != nil {
		return nil, nil, usageErr(command+" --limits-redis redis://[:PASSWORD@]HOST:6379/0", "--limits-redis: %v", err)
	}
	redis.SetLogger(redisLog{log}) // go-redis logs dial failures; keep them out of the progress display
	client := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = client.Ping(pctx).Err()
	cancel()
	if err != nil {
		client.Close()
		return nil, nil, failure("check that Redis is up at --limits-redis, and its password; or run without --limits-redis",
			fmt.Errorf("limits redis %s: %w", shown, err))
	}
	be, err := admit.NewRedis(admit.RedisConfig{Client: client, Namespace: namespace, Lease: admit.DefaultRedisLease, Background: background, Logger: log})
	if err != nil {
		client.Close()
		return nil, nil, usageErr(command+" --limits-namespace my-org", "%v", err)
	}
	lim, err := admit.New(admit.Config{Catalog: cat, Tier: tier, MaxConcurrency: max(concurrency, 0), Backend: be, Logger: log})
	if err != nil {
		client.Close()
		return nil, nil, failure("", fmt.Errorf("limiter: %w", err))
	}
	log.Info("limits shared through redis", "url", shown, "namespace", namespace, "on_outage", admit.FailClosed.String())
	return lim, func() { be.ReturnLeases(); client.Close() }, nil
}

// redisLog sends go-redis's own log lines to the logger at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}
