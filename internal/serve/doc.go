// Package serve is clade serve's gateway: an Anthropic-compatible HTTP API that many
// applications of one organisation point their SDK at (ANTHROPIC_BASE_URL) instead of
// the API. The gateway holds the organisation's key, admits every Messages call
// against the organisation's rate limits, queues calls instead of failing them with
// 429, shares the limits fairly between teams, and shows live throughput.
//
// # Model
//
//	client ─► auth (client key) ─► fair queue ─► admission (shared buckets) ─► upstream ─► client
//
// Each step:
//
//   - Auth: a client sends its own key (x-api-key or Authorization: Bearer), never the
//     organisation's. Keys maps each to a team; an unknown key gets the API's 401
//     authentication_error. Without Keys any key is accepted, as one team.
//   - Fair queue: per model class, calls wait in per-team FIFO queues served in
//     proportion to the teams' weights, in tokens (estimated input plus reserved
//     output), by self-clocked fair queueing (see fairQueue). One call of a class at
//     a time waits in the limiter, so a team with a few calls waits behind at most
//     one call of each other team, however many those have queued. A team with a cap
//     (Team.Cap) is skipped while over it if a team under its cap waits, and borrows
//     otherwise. Within a team, higher priority (the key's, or PriorityHeader) goes
//     first, aged by one level per Keys.PriorityAging of waiting.
//   - Admission: package admit, the limiter clade run uses, reserves one request,
//     the estimated input tokens (intake's estimate, calibrated per model from usage
//     as the runner does) and the expected output (max_tokens until a model has been
//     seen a few times, then the average generated, never more than max_tokens). A
//     call waits at most MaxWait in all; then the client gets a 429 rate_limit_error
//     with a retry-after. A client that disconnects leaves the queue. Beyond
//     MaxQueue waiting calls, or MaxQueueBytes of their bodies, a call gets that 429
//     at once.
//   - Upstream: the request body goes on byte for byte with the client's
//     anthropic-version and anthropic-beta; the answer comes back byte for byte: JSON
//     whole, SSE event by event, flushed as each arrives. The usage (the JSON body's,
//     or message_start's and message_delta's as they pass) is committed; every
//     response's rate-limit headers resync the buckets.
//   - A 429 pauses the class (the limiter's RateLimited) and a 529 shrinks its
//     concurrency (Overloaded); either, arriving before any byte went to the client, is
//     retried by the gateway, up to MaxAttempts, within MaxWait. The last one is passed
//     on as the API sent it.
//   - count_tokens, models and Message Batches are passed through unadmitted by the
//     limiter: they have their own limits. With budgets, a batch is costed at its
//     worst case at the batch price when it is created and held until its results
//     are counted (budget_batch.go). Batch objects' results_url is rewritten to the
//     gateway's origin, the one change the gateway makes to a body.
//   - A call settles (its reservation committed to the limiter, its cost to the
//     spend store) just after its answer has gone, in the background: its
//     reservation and budget hold stay in place until then. Run, and WaitSettled for
//     a program serving the Gateway itself, wait for every settle.
//   - Only the API's own routes are forwarded (see routes), each to the path it
//     matched, rebuilt from the route and its checked id, with the client's query.
//     Any other path or method, and any path that is not plain (percent-encoding,
//     dot segments, doubled slashes, backslashes), gets the API's 404 from the
//     gateway itself and never reaches the organisation's key.
//
// # What is authoritative
//
// The API is, for the limits and for what each call used; the shared backend (Redis
// with several gateways) for the buckets between responses. The fair queue is per
// gateway process unless Config.Order is set: then Redis holds, per class, the team
// tags and the virtual time, and each gateway's next call waits until its tag is the
// smallest across the gateways (SharedOrder), so several gateways keep one fair
// order between teams. Within a gateway the order of a team's own calls (priority)
// and the caps' buckets stay local: a team's cap holds on each gateway it uses.
//
// # Failure behaviour
//
//   - The upstream does not answer: the client gets a 502 api_error (its SDK retries);
//     the reservation stays charged, as the API may have counted the call.
//   - A stream breaks off upstream: the client sees it break off, its connection
//     aborted (nothing is made up, and no clean end lets an SDK take the part for a
//     whole answer). A stream cut short, by upstream or by a client that leaves, is
//     charged the usage seen so far with at least the output reserved, as the API
//     charged output the gateway never saw; it does not calibrate the estimates.
//   - The limiter's backend fails: under Redis's fail-closed policy calls wait (and
//     time out at MaxWait); a backend error answers 503.
//   - The organisation's key never leaves the gateway: it is not in any response,
//     log line, metric or status; error bodies from upstream are scrubbed of it.
package serve
