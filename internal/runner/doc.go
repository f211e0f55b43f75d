// Package runner drives a run's requests through the Messages API at the highest rate
// the account's limits allow: the engine behind `clade run`.
//
// # Model
//
// The input is imported into a jobs.Store (one River job per valid line). River's
// workers take jobs; for each, the runner picks the model (override, alias, routing
// rules, fallback), estimates the input and output tokens, waits for admission from a
// admit.Limiter (RPM, ITPM, OTPM per model class; AIMD concurrency on 529s), sends
// the user's params unchanged but for the model, and commits the actual usage. The
// result is written in the same transaction that completes the job, then appended to
// the output file.
//
// # What is authoritative
//
// The store: a request has a result row or it is pending. The output file is rebuilt
// from the store when a run (re)starts and extended as results commit, so after any
// crash the next start writes every finished custom_id exactly once.
//
// # Failure
//
//   - 429 with retry-after: the class pauses (with jitter) and the request waits for
//     admission again; nothing is sent before the retry-after.
//   - 529: the class's concurrency shrinks (AIMD) and the request backs off.
//   - 5xx, 408, 409, connection errors: backoff with jitter, within a retry budget;
//     when the budget is spent the job goes back to River, which retries it later.
//   - Other 4xx: final; the full error envelope becomes an errored result line.
//   - Spend cap (429 without retry-after, enforced_spend_limit_reached), bad key:
//     the run stops cleanly (ErrStopped) and the store resumes later.
//   - Cancelling Run's context drains: no new request starts, requests in flight
//     finish. Closing Config.Abort cancels requests in flight; they return to the
//     queue without counting as an attempt.
package runner
