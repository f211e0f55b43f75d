// Package dashboard is the live page of clade serve and of clade run, batch and
// hybrid runs: time-series charts of the process's own numbers, with history.
//
// # Model
//
//	Source ─(every Every)─► Sample ─► ring of Keep/Every samples ─► GET series JSON ─► page (SVG charts)
//
// A Source (the gateway, or a run's progress) composes one Sample of what it
// already computes: per model class the requests and tokens per minute against the
// limits in force and the upstream 429s and 529s, per team the queue depth, the
// admission wait's p50 and p99 over the sample interval (WaitHistograms) and the
// errors, the budgets' spend against their limits, and a run's progress (done,
// total, ok, errors, ETA, cost). The dashboard does not compute rates or ETAs of
// its own: it stores what the source said, so the page and the terminal display
// of a run never disagree.
//
// Dashboard.Run samples every Every (default 2 s) into a ring of the last Keep
// (default 30 minutes): a page opened late still shows that history. The page
// (page.html, app.js and app.css, embedded with go:embed, nothing fetched from
// elsewhere) polls the series endpoint for the samples after the last one it has
// and draws each chart itself in SVG.
//
// # What is authoritative
//
// The source is, at the time of each sample; the ring holds only this process's
// samples since it started, and is lost when it exits. A run's dashboard
// (Live) takes one last sample when the run ends and, while a page polls, serves
// until the page has read it (Dashboard.Final, at most 3 × Every), so the page
// ends at the run's end.
//
// # Failure behaviour
//
// A source that cannot read a part (the spend store, say) leaves that part out of
// the sample; the page shows a gap. The page keeps its points when a poll fails and
// says since when it has had no answer. Nothing the page shows carries a key: the
// sources put only team names, key labels, model classes and numbers in a sample.
//
// The handler is meant for a loopback listener (127.0.0.1:PORT) or behind the
// gateway's own address: it has no authentication of its own.
package dashboard
