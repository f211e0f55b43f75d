package cli

import (
	"fmt"
	"strconv"

	"github.com/clade-dev/clade/internal/runner"
)

// streamAboveValue is the --stream-above flag: a max_tokens, or never / always.
type streamAboveValue struct{ v *int64 }

func (s streamAboveValue) String() string {
	if s.v == nil {
		return "0"
	}
	switch *s.v {
	case runner.StreamNever:
		return "never"
	case runner.StreamAlways:
		return "always"
	}
	return strconv.FormatInt(*s.v, 10)
}

func (s streamAboveValue) Set(v string) error {
	switch v {
	case "never":
		*s.v = runner.StreamNever
		return nil
	case "always":
		*s.v = runner.StreamAlways
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 {
		return fmt.Errorf("want a max_tokens, 0 (default), -1 or never, or always")
	}
	*s.v = n
	return nil
}

func (s streamAboveValue) Type() string { return "N" }

// streamAboveUsage is the help of --stream-above.
const streamAboveUsage = "send requests whose max_tokens is above `N` as streams (no 10-minute limit per call;\n" +
	"the result is the same), and every prompt-cache warming request: 0 = 21333, the SDKs' rule;\n" +
	"-1 or never = none, warming requests included; always = all"
