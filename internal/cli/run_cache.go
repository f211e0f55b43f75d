package cli

import "fmt"

// cacheScheduleValue is --cache-schedule: on (the default) or off; it sets
// runner.Config.CacheScheduleOff.
type cacheScheduleValue struct{ off *bool }

func (c cacheScheduleValue) String() string {
	if c.off != nil && *c.off {
		return "off"
	}
	return "on"
}

func (c cacheScheduleValue) Set(v string) error {
	switch v {
	case "on":
		*c.off = false
	case "off":
		*c.off = true
	default:
		return fmt.Errorf("%q: want on or off", v)
	}
	return nil
}

func (cacheScheduleValue) Type() string { return "on|off" }

const cacheScheduleUsage = "prompt-cache scheduling: on sends one request per cache_control prefix first and the rest\nonce its answer has started (see docs/run.md); off sends them in input order at full concurrency"
