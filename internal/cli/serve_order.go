package cli

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/serve"
)

// sharedOrder returns the fair order clade serve shares with the other gateways on
// the Redis of --limits-redis, and the function that closes its client. The URL was
// checked by sharedLimiter.
func sharedOrder(rawURL, namespace string, log *slog.Logger) (*serve.SharedOrder, func(), error) {
	opts, err := admit.ParseRedisURL(rawURL)
	if err != nil {
		return nil, nil, usageErr("clade serve --limits-redis redis://[:PASSWORD@]HOST:6379/0", "--limits-redis: %v", err)
	}
	client := redis.NewClient(opts)
	o, err := serve.NewSharedOrder(serve.SharedOrderConfig{Client: client, Namespace: namespace, Logger: log})
	if err != nil {
		client.Close()
		return nil, nil, failure("", fmt.Errorf("shared order: %w", err))
	}
	return o, func() { client.Close() }, nil
}
