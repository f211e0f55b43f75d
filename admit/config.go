package admit

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/clade-dev/clade/catalog"
)

// TierAuto is the Config.Tier that learns the limits from response headers.
const TierAuto = "auto"

const (
	defaultBurst          = 1.0
	defaultHeadroom       = 0.02
	defaultMaxConcurrency = 256
	defaultPauseJitter    = 500 * time.Millisecond
)

// Config configures a Limiter. The zero value is usable: the embedded catalog, auto
// limits starting from its most cautious tier, an in-process backend.
type Config struct {
	// Catalog supplies the model classes (and which of them count cache reads toward
	// ITPM) and the tiers' limits. Default: catalog.Default().
	Catalog *catalog.Catalog

	// Tier is the catalog tier whose limits apply, or TierAuto to learn them. With a
	// named tier the headers may lower a limit (a workspace limit, a smaller account)
	// but never raise one above the tier's, so a tier can be used to take less than
	// the account allows. With TierAuto the limiter starts from StartTier and adopts
	// every limit the headers report, up or down. Default: TierAuto.
	Tier string

	// StartTier is the tier auto mode assumes until a class's first response reports
	// the real limits. Default: the catalog's most cautious tier (lowest default RPM,
	// then ITPM), "tier-1" in the embedded catalog.
	StartTier string

	// Backend holds the bucket state. Default: NewMemory(), private to this Limiter.
	// Give several limiters one shared backend to share one organisation's budget.
	Backend Backend

	// Burst is each bucket's capacity as a fraction of one minute's limit, in (0, 1].
	// The API documents buckets that refill continuously up to one minute's limit,
	// which the emulator implements; lower it if the account gets 429s on short bursts
	// below the per-minute limit. Default 1.
	Burst float64

	// Headroom is the fraction of each bucket's capacity that admission leaves unused,
	// in [0, 0.5). It absorbs what the local model cannot see yet: input estimates that
	// fall short, output beyond the expected, other users of the organisation between
	// two responses. It is a floor on the level, not a cut in the rate: once the bucket
	// is drained the limiter still admits at the full refill rate, so it costs a
	// one-time Headroom × capacity (2 % of one minute) and no sustained throughput.
	// Default 0.02; negative means none.
	Headroom float64

	// MaxConcurrency caps calls in flight across every class. Default 256.
	MaxConcurrency int

	// AIMD shapes each class's overload concurrency controller (see AIMDConfig); its
	// Max defaults to MaxConcurrency.
	AIMD AIMDConfig

	// PauseJitter is the most random time added to a 429's retry-after when a class is
	// paused, so that limiters sharing an organisation do not all return at once.
	// Within one limiter waiters leave a pause one at a time anyway (see Wait).
	// Default 500 ms; negative disables jitter.
	PauseJitter time.Duration

	// Rand draws the jitter; it is only used under a lock. Default: a generator seeded
	// from the runtime's random source. Tests pass a seeded one.
	Rand *rand.Rand

	// Now is the clock of the methods without an explicit time (Wait, Commit, …).
	// Default time.Now.
	Now func() time.Time

	// Estimator turns the requests Middleware and Transport admit into a Need, and
	// learns from their usage. Default: a new Estimator, private to this Limiter.
	Estimator *Estimator

	// Logger receives what Middleware and Transport cannot return to their caller: a
	// backend that failed to settle a call, a response whose usage could not be
	// read. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Catalog == nil {
		c.Catalog = catalog.Default()
	}
	if c.Tier == "" {
		c.Tier = TierAuto
	}
	if c.StartTier == "" {
		c.StartTier = c.Catalog.CautiousTier()
	}
	if c.Backend == nil {
		c.Backend = NewMemory()
	}
	if c.Burst == 0 {
		c.Burst = defaultBurst
	}
	if c.Headroom == 0 {
		c.Headroom = defaultHeadroom
	}
	if c.Headroom < 0 {
		c.Headroom = 0
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = defaultMaxConcurrency
	}
	c.AIMD = c.AIMD.withDefaults(c.MaxConcurrency)
	if c.PauseJitter == 0 {
		c.PauseJitter = defaultPauseJitter
	}
	if c.PauseJitter < 0 {
		c.PauseJitter = 0
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Estimator == nil {
		c.Estimator = NewEstimator()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a Config after withDefaults.
func (c Config) validate() error {
	var errs []error
	if c.Tier != TierAuto {
		if _, err := c.Catalog.Tier(c.Tier); err != nil {
			errs = append(errs, fmt.Errorf("tier: %w", err))
		}
	}
	if _, err := c.Catalog.Tier(c.StartTier); err != nil {
		errs = append(errs, fmt.Errorf("start tier: %w", err))
	}
	if !(c.Burst > 0 && c.Burst <= 1) {
		errs = append(errs, fmt.Errorf("burst %v: must be in (0, 1]", c.Burst))
	}
	if !(c.Headroom >= 0 && c.Headroom < 0.5) {
		errs = append(errs, fmt.Errorf("headroom %v: must be in [0, 0.5)", c.Headroom))
	}
	if c.MaxConcurrency < 1 {
		errs = append(errs, fmt.Errorf("max concurrency %d: must be at least 1", c.MaxConcurrency))
	}
	if err := c.AIMD.validate(); err != nil {
		errs = append(errs, err)
	} else if c.AIMD.Max > c.MaxConcurrency {
		errs = append(errs, fmt.Errorf("aimd max %d: must not exceed max concurrency %d", c.AIMD.Max, c.MaxConcurrency))
	}
	return errors.Join(errs...)
}
