package runner

import (
	"context"
	"fmt"

	"github.com/clade-dev/clade/internal/upstream"
)

// DefaultStreamAbove is the max_tokens above which a request is sent as a stream by
// default: the SDKs' rule that a non-streaming call may take 1 h × max_tokens /
// 128,000 and must not be allowed more than 10 minutes (anthropic-api.md 7).
const DefaultStreamAbove = 21_333

// Special values of Config.StreamAbove.
const (
	// StreamNever sends every request non-streaming.
	StreamNever = -1
	// StreamAlways sends every request as a stream.
	StreamAlways = -2
)

// streamThreshold resolves Config.StreamAbove: requests whose max_tokens is above the
// result stream; -1 means none do.
func streamThreshold(v int64) (int64, error) {
	switch {
	case v == 0:
		return DefaultStreamAbove, nil
	case v == StreamNever:
		return -1, nil
	case v == StreamAlways:
		return 0, nil
	case v < 0:
		return 0, fmt.Errorf("runner: StreamAbove %d: want a max_tokens, 0 (default %d), %d (never) or %d (always)",
			v, DefaultStreamAbove, StreamNever, StreamAlways)
	}
	return v, nil
}

// call sends one attempt, as a stream when max_tokens is above the threshold, or
// when it warms a prompt-cache prefix (warms) and streams are not off: a stream's
// first byte, which lets the prefix's other requests go, comes at the answer's
// start, a whole response's only with its end. A streamed answer is assembled into
// the same Response, so nothing after it (usage, admission, cost, the result line,
// retries) depends on how it travelled.
func (r *run) call(ctx context.Context, params []byte, maxTokens int64, warms bool) (*upstream.Response, error) {
	if r.streamAbove >= 0 && (maxTokens > r.streamAbove || warms) {
		return r.cfg.Client.MessagesStream(ctx, params)
	}
	return r.cfg.Client.Messages(ctx, params)
}
