// Package plan estimates, before any request is sent, what a JSONL workload will take:
// per model its requests, input and output tokens and cost (realtime and through the
// Message Batches API), per tier the realtime time to finish and the limit that binds,
// and a recommendation of mode (batch or realtime) and tier.
//
// # Model
//
// Scan reads the input as a stream with package intake (or every k-th line with
// Sample, scaling the totals up). Input tokens are intake's estimate from the request
// bytes; output tokens are an assumption (OutputAssumption: a fraction of max_tokens,
// DefaultOutputRatio by default, or a fixed count), because the API counts only what a
// model generates and that is not in the input.
//
// Time (Estimate): each model class has three token buckets, RPM, ITPM and OTPM, that
// start full with one minute's limit and refill at the limit per minute. Getting need
// units through a limit therefore takes
//
//	minutes = max(0, (need − limit) / limit)
//
// per dimension; a class takes the largest of its three (that limit binds), and
// classes run in parallel, so a tier takes the largest over classes. Latency (the last
// calls' time to finish, typically seconds) and the limiter's 2 % headroom are left
// out. A request whose input or expected output exceeds one minute's limit can never
// be admitted; the tier is marked TooLarge.
//
// Cost (catalog.Cost): input at the model's input price, output at its output price;
// batch multiplies both by catalog Pricing.Batch. No cache discount is assumed in
// these figures.
//
// Prompt cache (CacheEstimate): where lines have cache_control, each line's last
// breakpoint (intake's Request.Cache, from package cacheprefix: the prefix clade run
// schedules by) is counted per distinct prefix, and the input is estimated twice.
// With cache-aware ordering each prefix is written once (catalog cache_write_5m or
// cache_write_1h, by its TTL) and read by its other lines (cache_read), and reads do
// not count toward ITPM unless the class's cache_reads_count_itpm; without it, every
// line writes its prefix (the worst case). Both orders get a cost and a time per
// tier; without cache_control they equal the plan's own.
//
// Batch prompt cache (batchcache.go): the API caches batch requests best effort;
// in groups of G processed together (DefaultCacheWarmGroup), a cold prefix of k
// lines in a batch is expected to be written ColdWrites(k) times. CacheEstimate
// prices clade batch by it, and clade batch --cache-warm realtime, whose warm rule
// (WarmSaving) lives here so that package batch decides with the same function
// plan estimates with.
//
// # What is authoritative
//
// Every number (limits, prices, credits, spend caps, the batch multiplier, the batch
// size limit) comes from the *catalog.Catalog passed in; none is copied here.
//
// # Failure behaviour
//
// Bad lines are counted and the first MaxProblems kept as "file:line: field: reason";
// they never stop a plan. Models the catalog does not know are listed and left out of
// times and costs. A read error of the file ends Scan with the error.
package plan
