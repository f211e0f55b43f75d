package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedOrderConfig configures a SharedOrder.
type SharedOrderConfig struct {
	// Client is the Redis the gateways share; required. Give the one the limits are
	// shared on (--limits-redis).
	Client redis.Scripter
	// Namespace separates organisations on one Redis, as the limits'
	// --limits-namespace does; default "default".
	Namespace string
	// Prefix starts every key; default "clade:fairorder".
	Prefix string
	// Poll is how often a gateway whose next call is not the smallest across the
	// gateways asks again; default 2 ms.
	Poll time.Duration
	// Lease is how long a gateway's bid counts without being renewed (a gateway that
	// died holds the others back at most this long); default 2 s.
	Lease time.Duration
	// Logger hears of Redis failures (the order is then per gateway until Redis
	// answers again). Default: discard.
	Logger *slog.Logger
}

// SharedOrder puts the calls of several gateways on one Redis in one fair order (see
// fairQueue): per model class, the team tags and the virtual time live in a Redis
// hash, updated by Lua scripts, and each gateway's next call (the one holding its
// baton) bids there with its tag. A gateway whose bid is not the smallest of the
// live bids defers, asking again every Poll; the smallest goes to the limiter, keeps
// its bid while it waits there, and withdraws it when admitted, moving the virtual
// time. Costs: none while a gateway's class has no call waiting (a call that finds
// the baton free goes straight to the limiter, as without Redis); otherwise two
// round trips per call (bid, withdraw), one per Poll while deferring, and one per
// Lease/3 while waiting in the limiter. If Redis fails, a gateway goes on in its own
// order for a second, then tries Redis again (fail open: the limits' own Redis policy
// still holds the organisation's limits).
type SharedOrder struct {
	cfg SharedOrderConfig
	id  string // this gateway
	// downUntil is when Redis, after a failure, is tried again (Unix ns): until then
	// calls go in this gateway's order without a round trip.
	downUntil atomic.Int64
}

// orderRetry is how long the order is per gateway after a Redis failure.
const orderRetry = time.Second

// NewSharedOrder returns a SharedOrder for cfg, with defaults applied; it does not
// contact Redis.
func NewSharedOrder(cfg SharedOrderConfig) (*SharedOrder, error) {
	if cfg.Client == nil {
		return nil, errors.New("shared order: client: required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "clade:fairorder"
	}
	if cfg.Poll == 0 {
		cfg.Poll = 2 * time.Millisecond
	}
	if cfg.Lease == 0 {
		cfg.Lease = 2 * time.Second
	}
	if cfg.Poll < 0 || cfg.Lease < 10*cfg.Poll {
		return nil, fmt.Errorf("shared order: poll %v, lease %v: want a positive poll and a lease of at least 10 polls", cfg.Poll, cfg.Lease)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	rand.Read(b[:])
	return &SharedOrder{cfg: cfg, id: hex.EncodeToString(b[:])}, nil
}

// orderClass is one class's shared order, as one gateway sees it.
type orderClass struct {
	o    *SharedOrder
	keys []string // the tags' hash, the bids' hash
	warn sync.Once
}

func (o *SharedOrder) class(class string) *orderClass {
	if o == nil {
		return nil
	}
	// Both keys in one Redis Cluster slot (the braces), as a script needs.
	k := o.cfg.Prefix + ":{" + o.cfg.Namespace + ":" + class + "}"
	return &orderClass{o: o, keys: []string{k, k + ":bids"}}
}

// A class has two hashes: KEYS[1] "v", the virtual time (the largest tag admitted),
// and "t:TEAM", the tag of the team's last call to bid; KEYS[2] "b:GW", a gateway's
// bid, and "e:GW", when it lapses (Redis time, ms), so a bid reads the few gateways'
// bids and not every team's tag. Tags are written with 17 significant digits.
var (
	// bidScript: KEYS the two hashes; ARGV gateway, team, cost ÷ weight, lease (ms), the
	// tag of an earlier bid of the same call or "", "1" if the team has been waiting
	// (its tag then follows its last one, as a backlogged team's does, not the
	// virtual time, which the other teams' calls moved meanwhile). Returns {1 if the
	// bid is the smallest live one (ties by gateway id) else 0, the tag}.
	bidScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gw, team = ARGV[1], ARGV[2]
local tag
if ARGV[5] == '' then
  local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  local f = redis.call('HGET', KEYS[1], 't:' .. team)
  if f and ARGV[6] == '1' then
    tag = tonumber(f) + tonumber(ARGV[3])
  else
    tag = math.max(tonumber(f or '0'), v) + tonumber(ARGV[3])
  end
  redis.call('HSET', KEYS[1], 't:' .. team, string.format('%.17g', tag))
else
  tag = tonumber(ARGV[5])
end
redis.call('HSET', KEYS[2], 'b:' .. gw, string.format('%.17g', tag), 'e:' .. gw, now + tonumber(ARGV[4]))
local all = redis.call('HGETALL', KEYS[2])
local go = 1
for i = 1, #all, 2 do
  local k = all[i]
  if string.sub(k, 1, 2) == 'b:' then
    local other = string.sub(k, 3)
    if other ~= gw then
      local e = tonumber(redis.call('HGET', KEYS[2], 'e:' .. other) or '0')
      if e < now then
        redis.call('HDEL', KEYS[2], k, 'e:' .. other)
      else
        local ot = tonumber(all[i + 1])
        if ot < tag or (ot == tag and other < gw) then go = 0 end
      end
    end
  end
end
redis.call('PEXPIRE', KEYS[1], 3600000)
redis.call('PEXPIRE', KEYS[2], 3600000)
return {go, string.format('%.17g', tag)}
`)
	// keepScript renews a bid: KEYS the two hashes, ARGV gateway, lease (ms).
	keepScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[2], 'b:' .. ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'e:' .. ARGV[1], now + tonumber(ARGV[2]))
end
return 1
`)
	// doneScript withdraws a bid: KEYS the two hashes, ARGV gateway, the tag, 1 if the call was
	// admitted (the virtual time then moves to its tag).
	doneScript = redis.NewScript(`
redis.call('HDEL', KEYS[2], 'b:' .. ARGV[1], 'e:' .. ARGV[1])
if ARGV[3] == '1' then
  local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  local tag = tonumber(ARGV[2])
  if tag > v then redis.call('HSET', KEYS[1], 'v', ARGV[2]) end
end
return 1
`)
)

// turn is one call's place in the shared order.
type turn struct {
	c    *orderClass
	tag  string
	stop chan struct{}
	done chan struct{}
}

// wait bids for the call of team with cost ÷ weight cw and waits until its bid is
// the smallest across the gateways, or ctx ends; backlogged says that the team had
// another call waiting here when this one joined. A Redis failure returns a nil turn
// and no error: the call goes on in this gateway's order.
func (c *orderClass) wait(ctx context.Context, team string, cw float64, backlogged bool) (*turn, error) {
	if time.Now().UnixNano() < c.o.downUntil.Load() {
		return nil, nil
	}
	lease := strconv.FormatInt(c.o.cfg.Lease.Milliseconds(), 10)
	cws := strconv.FormatFloat(cw, 'g', 17, 64)
	tag, cont := "", "0"
	if backlogged {
		cont = "1"
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := bidScript.Run(rctx, c.o.cfg.Client, c.keys, c.o.id, team, cws, lease, tag, cont).Slice()
		cancel()
		if err != nil || len(res) != 2 {
			if ctx.Err() != nil {
				c.withdraw(tag, false)
				return nil, ctx.Err()
			}
			c.failed(err)
			c.withdraw(tag, false)
			return nil, nil
		}
		tag, _ = res[1].(string)
		if g, _ := res[0].(int64); g == 1 {
			t := &turn{c: c, tag: tag, stop: make(chan struct{}), done: make(chan struct{})}
			go t.keep(lease)
			return t, nil
		}
		select {
		case <-ctx.Done():
			c.withdraw(tag, false)
			return nil, ctx.Err()
		case <-time.After(c.o.cfg.Poll):
		}
	}
}

// keep renews the bid while the call waits in the limiter.
func (t *turn) keep(lease string) {
	defer close(t.done)
	tick := time.NewTicker(t.c.o.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			keepScript.Run(ctx, t.c.o.cfg.Client, t.c.keys, t.c.o.id, lease)
			cancel()
		}
	}
}

// end stops renewing the bid and withdraws it; admitted moves the virtual time.
func (t *turn) end(admitted bool) {
	if t == nil {
		return
	}
	close(t.stop)
	<-t.done
	t.c.withdraw(t.tag, admitted)
}

func (c *orderClass) withdraw(tag string, admitted bool) {
	if tag == "" {
		return
	}
	a := "0"
	if admitted {
		a = "1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := doneScript.Run(ctx, c.o.cfg.Client, c.keys, c.o.id, tag, a).Err(); err != nil {
		c.failed(err)
	}
}

// failed notes a Redis failure: the order is this gateway's for orderRetry.
func (c *orderClass) failed(err error) {
	c.o.downUntil.Store(time.Now().Add(orderRetry).UnixNano())
	c.warn.Do(func() {
		c.o.cfg.Logger.Warn("shared fair order: redis failed; this gateway orders its own calls meanwhile", "error", err)
	})
}
