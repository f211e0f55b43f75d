package serve

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Priorities. A call's priority is an integer from 0 to MaxPriority, higher first;
// the names stand for the first three.
const (
	PriorityLow     = 0
	PriorityNormal  = 1
	PriorityHigh    = 2
	MaxPriority     = 9
	DefaultPriority = PriorityNormal
)

// PriorityHeader is the request header a client sets a call's priority with (low,
// normal, high or 0–9). It is for the gateway only: upstream.Proxy forwards an
// allow-list of headers that does not hold it, and the gateway deletes it from the
// request before anything is forwarded.
const PriorityHeader = "x-clade-priority"

// DefaultPriorityAging is how long a waiting call takes to gain one priority level,
// unless the client-keys file sets priority_aging: a low call waiting behind a flood
// of high ones passes every high call that arrived more than 2 × 10 s after it.
const DefaultPriorityAging = 10 * time.Second

// ParsePriority reads a priority: low, normal, high (0, 1, 2) or a number from 0 to
// MaxPriority.
func ParsePriority(s string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "low":
		return PriorityLow, nil
	case "normal":
		return PriorityNormal, nil
	case "high":
		return PriorityHigh, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > MaxPriority {
		return 0, fmt.Errorf("priority %q: want low, normal, high or 0 to %d", truncateField(s), MaxPriority)
	}
	return n, nil
}

// priority returns the priority of a Messages call: its PriorityHeader if set, else
// its key's priority (priority: in the client-keys file), else DefaultPriority. It
// deletes the header from r, which is then forwarded without it. A header that is
// not a priority is an error (the client's 400), not silently the default.
func (g *Gateway) priority(r *http.Request) (int, error) {
	v, ok := r.Header[http.CanonicalHeaderKey(PriorityHeader)]
	if ok {
		r.Header.Del(PriorityHeader)
		if len(v) != 1 {
			return 0, fmt.Errorf("%s given %d times: want one of low, normal, high or 0 to %d", PriorityHeader, len(v), MaxPriority)
		}
		p, err := ParsePriority(v[0])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", PriorityHeader, err)
		}
		return p, nil
	}
	if c := g.cfg.Keys.lookup(clientKey(r)); c != nil {
		return c.prio, nil
	}
	return DefaultPriority, nil
}
