// Package batch drives a run through the Message Batches API: `clade batch`.
//
// # Model
//
// The input is imported into the job store as `clade run` does, without River jobs
// (jobs.ImportOptions.NoJobs): batch dispatch owns its requests. A dispatcher loop,
// one per run (it holds the run's lease, jobs.Store.AcquireLease), does three
// things until every request has a result:
//
//   - fill: while the run's requests in open batches are below the tier's
//     processing-queue limit, take pending requests in line order into a create
//     body of at most Config.MaxRequests requests and Config.MaxBytes bytes (the
//     exact bytes sent, measured as the body is built), record the intent, create
//     the batch, record its id.
//   - poll: GET each open batch every fortieth of its age, within Config.PollMin
//     and Config.PollMax (and half the batch RPM), so its end is seen at most ~2.5%
//     of its running time late.
//   - ingest: stream an ended batch's results (upstream.Results) into
//     clade_result, then mark the batch done. succeeded and non-retryable errored
//     lines (invalid_request_error, ...) are final; expired, canceled and
//     retryable errored (api_error, overloaded_error) lines are not written, so
//     their requests become pending again and go into a later batch, until a
//     request has been in Config.MaxRounds batches: then its last line is final.
//     In a run canceled with `clade batch cancel` every line is final, and the
//     requests left get a canceled line (see cancel.go).
//
// With Config.CacheWarm CacheWarmRealtime, a fill first sends one line of each
// prompt-cache prefix where that pays through the realtime workers (warm.go) and
// creates its batches once those calls are answered, so the batches read the
// prefixes instead of writing them best effort on several lines.
//
// The hybrid mode (package hybrid) runs the same dispatcher with MayFill,
// KeepJobs, Nudge and Leased: it stops new batches once realtime takes over.
//
// Every batch-endpoint call is paced to the tier's batch RPM (about 90% of it).
//
// # What is authoritative
//
// The store: clade_batch and clade_batch_item (see jobs.Store.RecordBatchIntent)
// say which requests are in which batch; clade_result what was done. The API's
// batch objects are only read.
//
// # Failure
//
// A batch is recorded as an intent, with its requests, before the create call, and
// its id right after. A crash (or a transport error after the body was sent)
// between the two leaves an intent that may or may not exist at the API, which has
// no idempotency key. On start, and after such an error, the dispatcher lists the
// batches created since the attempt (less Config.ReconcileWindow) and adopts the
// oldest one it has not recorded whose request count matches; if none does, the
// intent is dropped and its requests are sent again. Results are written with ON
// CONFLICT DO NOTHING and the batch marked done only after its last line, so a
// crash mid-download reads the results again without duplicates. A result line
// whose custom_id is not in the batch is ignored. See docs/batch.md for the window
// and its cost.
package batch
