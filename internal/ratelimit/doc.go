// Package ratelimit is clade's admission control for the Messages API: it lets a call
// go only when the account's rate limits have room for it, so that a bulk run goes as
// fast as the tier allows without 429 storms.
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
//     would keep Headroom × capacity after it and the class is not paused; otherwise it
//     says how long until it would fit. Wait queues the callers of a class in FIFO order
//     and sleeps, never polls.
//   - Commit replaces the reservation with the response's usage: input plus cache
//     writes (plus cache reads on the classes marked CacheReadsCountITPM) and the
//     generated output, refunding or charging the difference. Cancel refunds a call
//     that was never sent; RateLimited and Overloaded refund refused calls; Fail keeps
//     the charge of a call whose fate is unknown.
//   - Every response's anthropic-ratelimit-* headers resync the buckets (Resync).
//   - A 429 pauses its class until retry-after plus jitter. A 529 is overload, not
//     quota: it leaves the buckets alone and shrinks the class's concurrency limit,
//     an AIMD controller. MaxConcurrency caps calls in flight across classes.
//
// Reserving the expected output matters: the server counts output as it is generated,
// so while calls are in flight it sees more room than there is. Holding the expected
// output locally keeps that room from being handed out twice, and Headroom (2 % of a
// bucket by default) absorbs what estimates miss. Headroom is a floor on the level, not
// a cut in the refill rate, so a saturated limiter still admits at the full rate; in
// the emulator simulation (sim_test.go) this sustains ≥ 0.97 of the binding limit with
// no 429s.
//
// Every method that depends on the time has a form that takes it (ReserveAt,
// CommitAt, …), as golang.org/x/time/rate does, so that tests never sleep.
//
// # What is authoritative
//
// The server is authoritative for the limits and for any consumption the limiter
// cannot see (other processes, other keys of the organisation). Local accounting is
// authoritative for this limiter's own calls in flight, which the server's counts lag.
// Resync therefore reconciles by taking, per bucket, the minimum of the local level
// and the reported remaining plus its rounding (500 tokens, since token counts are
// rounded to the nearest 1,000; 1 request). It never raises a level and never
// subtracts calls in flight from the report, so nothing is counted twice; a report
// older than the last one applied (responses handled out of order) lowers nothing.
// Commit before Resync for the same response (the Reservation methods do), because the
// report already includes that call's actual usage.
//
// Limits: with a named Tier, the catalog's numbers apply and headers may only lower
// them (a workspace limit). With TierAuto, a class starts from the cautious StartTier
// and adopts whatever limits its headers report, up or down; on a change the level
// moves by the change in capacity, so reservations in flight stay taken.
//
// # Backends
//
// Bucket state lives behind the Backend interface: Memory in process (the default),
// and a shared backend (Redis, for `clade serve` on several machines) to come. Every
// backend must pass the conformance suite in package ratelimittest. Calls in flight
// and concurrency limits stay local to each Limiter.
//
// # Failure behaviour
//
//   - Estimates are wrong: Commit corrects the buckets when the call ends; until then
//     Headroom absorbs the error. A level may go below zero (more was used than
//     reserved) and is paid back by refill before anything else is admitted.
//   - A call is never finished (a bug): its reservation stays charged and its
//     concurrency slot stays taken; Snapshot shows it in InFlight.
//   - The local model drifts from the server: the next response's headers pull the
//     levels down; a 429 pauses the class, and its headers pull the levels down.
//   - Spend cap (429 without retry-after): RateLimited refunds and does not pause;
//     the caller must stop, since no retry succeeds before the month ends.
//   - Backend errors (a shared backend unreachable) are returned wrapped from Reserve,
//     Wait and the finishing methods; concurrency slots are released regardless. What
//     to do then (fail closed, or fall back to a local Memory) is the caller's policy.
//   - Clocks: a now earlier than one a bucket has already seen adds no refill, so
//     out-of-order readings are harmless.
package ratelimit
