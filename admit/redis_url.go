package admit

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ParseRedisURL returns the client options of a redis:// (or rediss://, unix://) URL,
// set up for a Redis backend: no command retries (a retried script could apply
// twice), and a 1 s dial timeout unless the URL sets one, so that an outage is noticed
// quickly. Its error never contains the URL's password.
func ParseRedisURL(raw string) (*redis.Options, error) {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return nil, fmt.Errorf("redis URL %s: %v", RedactURL(raw), err)
	}
	opts.MaxRetries = -1
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	return opts, nil
}

// RedactURL returns raw with the password of its userinfo replaced by "xxxxx" (a lone
// userinfo too, in case it is a password written without the colon), for logs and
// error messages.
func RedactURL(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	end := len(rest)
	if j := strings.IndexAny(rest, "?#"); j >= 0 {
		end = j
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	user := rest[:at]
	if k := strings.Index(user, ":"); k >= 0 {
		user = user[:k] + ":xxxxx"
	} else {
		user = "xxxxx"
	}
	return raw[:i+3] + user + rest[at:]
}
