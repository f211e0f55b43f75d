// Package admit is admission control for the Anthropic Messages API: it lets a call
// go only when the account's rate limits have room for it, so that a bulk run goes as
// fast as the tier allows without 429 storms.
//
// # Use
//
// With the official Go SDK (v1 or v2), give the client the Limiter's Middleware;
// every other HTTP client takes its Transport:
//
//	lim, err := admit.New(admit.Config{Tier: "tier-4"}) // or TierAuto: learn from headers
//	client := anthropic.NewClient(option.WithMiddleware(lim.Middleware))
//	hc := &http.Client{Transport: lim.Transport(nil)}
//
// Each Messages call then waits for room (failing at once with ErrDeadline when the
// wait would pass its context's deadline), and its answer settles what it took. The
// lower-level API below (Wait or Reserve, then Commit, RateLimited, Overloaded, Fail
// or Cancel) is for callers that are not HTTP clients. docs/library.md has the whole
// story; clade run and clade serve admit their calls with this package.
//
// # Model
//
// The API limits each model class (a pool of models, catalog.Class) with three token
// buckets that refill continuously: requests, input tokens and output tokens per minute
// (RPM, ITPM, OTPM). The limiter keeps a copy of each bucket: capacity Burst × one
// minute's limit, refilled at limit/60 per second.
//
//   - Reserve (or Wait, which blocks) takes 1 request, the estimated input tokens and
//     the expected output tokens before a call. It admits the call only if every bucket
//     keeps Headroom × capacity after it and the class is not paused; otherwise it says
//     how long until the call would fit. Wait queues the callers of a class in FIFO
//     order; the first sleeps until the call fits or a refund arrives, never polls.
//   - The finishing methods settle the reservation. Commit replaces it by the response's
//     usage — input plus cache writes (plus cache reads on the classes marked
//     CacheReadsCountITPM) and the generated output — refunding or charging the
//     difference. Cancel refunds a call never sent; RateLimited and Overloaded refund
//     refused calls; Fail keeps the charge of a call whose fate is unknown.
//   - Every response's anthropic-ratelimit-* headers resync the buckets.
//   - A call prepared from its body (Prepare, PrepareBody) whose prompt-cache prefix
//     this Limiter has seen answered within the prefix's TTL reserves its input less
//     the prefix, as cache reads take no ITPM except on the classes marked
//     CacheReadsCountITPM; until then it reserves its whole prompt (cachewarm.go).
//   - A 429 pauses its class until retry-after plus jitter. A 529 is overload, not
//     quota: it leaves the buckets alone and shrinks the class's concurrency limit
//     (AIMD). MaxConcurrency caps calls in flight across classes.
//
// The server counts output tokens as they are generated, so while calls are in flight
// it sees more room than there is. Reserving the expected output keeps that room from
// being handed out twice; the reserved output stays held until the call settles, and
// the output bucket refills only up to capacity less what is held, as the server's
// full bucket stores no refill while it has not charged that output yet (without this,
// a run's first burst is credited refill the server never gave, and 429s follow).
// Headroom (2 % of each bucket by default) absorbs what estimates miss. It is a floor
// on the level, not a cut in the refill rate: a saturated limiter still admits at the
// full rate, and the headroom costs one-time 2 % of a minute's budget.
//
// Against the emulator (sim_test.go: the emulator's own buckets, token counting,
// output and latency models, minutes of traffic in a testing/synctest bubble) this
// sustains 0.99–1.00 of whichever limit binds, with no 429s, also with input estimates
// 25 % off, output above its expectation, and limits learned from the headers.
//
// Every method that depends on the time has a form that takes it (ReserveAt,
// CommitAt, …), as golang.org/x/time/rate does, so that tests never sleep.
//
// # What is authoritative
//
// The server is authoritative for the limits and for any use the limiter cannot see
// (other processes, other keys of the organisation). Local accounting is
// authoritative for this limiter's own calls in flight, which the server's counts lag.
// Resync therefore reconciles per bucket by taking the minimum of the local level and
// the reported remaining plus its rounding (500 tokens, as token counts are rounded to
// the nearest 1,000; 1 request). It never raises a level and never subtracts calls in
// flight from the report, so nothing is counted twice; a report older than the last
// one applied (responses handled out of order) lowers nothing. Commit settles a call
// before resyncing with its own response, whose remaining already includes the call.
// The one double count left is transient and errs on the safe side: the input
// estimate error of other calls in flight, visible in the report before they commit.
//
// Limits: with a named Tier, the catalog's numbers apply and headers may only lower
// them (a workspace limit). With TierAuto, a class starts from the cautious StartTier
// and adopts whatever limits its headers report, up or down; on a change the level
// moves by the change in capacity, so reservations in flight stay taken.
//
// # Backends
//
// Bucket state lives behind the Backend interface: Memory in process (the default),
// and Redis, shared by limiters in many processes and machines (`clade run
// --limits-redis`, several gateways). Every backend must pass the conformance suite in
// package admittest. Calls in flight,
// pauses' jitter and the concurrency limits are local to each Limiter. Limiters that
// share an organisation should share a backend: with one backend each, a limiter sees
// the others only through its own responses' headers, and their use between two of
// those can exceed the headroom (a few % of 429s in the simulation, still at full
// utilization).
//
// The Redis backend keeps each class in one hash under Prefix:Namespace:class (the
// namespace is the organisation, so two on one Redis do not mix) and runs each method
// as one Lua script, atomically, with Memory's bucket math (levels as exact "%.17g"
// strings, times in integral microseconds). Its clock is Redis TIME, so machines
// whose clocks disagree still agree on the buckets; ClockCaller uses the callers' now
// (the conformance suite). Held output is kept per instance with a lease
// (RedisConfig.HeldLease), so a process that crashes with calls in flight does not
// hold output forever; a class Redis lost (a restart, a flush, the TTL) is recreated
// empty, refilling from then on, while a class new to the namespace starts full (see
// Redis). While Redis is unreachable the backend follows its OutagePolicy:
// FailClosed (the default) admits nothing and keeps settles to apply later, as a
// shared budget promises no 429 storms and any local guess, times every process, can
// make one; FailLocal falls back to a Memory with 1/Instances of each limit.
//
// # Failure behaviour
//
//   - Estimates are wrong: settling corrects the buckets when the call ends; until then
//     the headroom absorbs the error. A level may go below zero (more was used than
//     reserved) and is paid back by refill before anything else is admitted.
//   - A call is never finished (a bug): its reservation stays charged, its output
//     held and its concurrency slot taken; Snapshot shows it in InFlight.
//   - The local model drifts from the server: the next response's headers pull the
//     levels down; a 429 pauses the class and its headers pull the levels down.
//   - Spend cap (a 429 without retry-after): RateLimited refunds and does not pause;
//     the caller must stop, since no retry succeeds before the month ends.
//   - Overload: 529s shrink concurrency, at most once per round of calls; the retry
//     delay after a 529 is the caller's (package upstream), as it is the SDKs'.
//   - Backend errors are returned wrapped from Reserve, Wait and the finishing
//     methods; concurrency slots are released regardless. A Redis backend that cannot
//     reach Redis does not return errors but follows its OutagePolicy: under
//     FailClosed, Reserve answers with a wait, so Wait keeps callers waiting (and
//     sending nothing) until Redis answers again.
//   - Clocks: a now earlier than one a bucket has already seen adds no refill, so
//     readings taken out of order are harmless.
package admit
