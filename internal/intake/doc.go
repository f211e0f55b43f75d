// Package intake reads the input of a run: a JSONL file in the Message Batches
// request line format,
//
//	{"custom_id": "req-1", "params": {"model": "...", "max_tokens": 1024, "messages": [...]}}
//
// as a stream. A Reader holds one line at a time, so memory stays constant for any
// file size; a line may be as long as MaxLineBytes (256 MiB, the Message Batches
// body limit), far beyond bufio.Scanner's 64 KiB.
//
// Each line is checked before any request is sent: it must be a JSON object with
// exactly custom_id and params; custom_id must match ^[a-zA-Z0-9_-]{1,64}$; params
// must be an object carrying model (a non-empty string), max_tokens (a positive
// integer) and messages (a non-empty array), and must not ask for stream. A bad line
// becomes a Problem naming its line number and field, and reading goes on with the
// next line. Blank lines are skipped without a Problem.
//
// params stays the user's bytes: it is never decoded into typed structs and
// re-encoded, so fields clade does not know reach the API unchanged.
//
// What intake does not do: duplicate custom_ids are found by the job store (package
// jobs), which can do it in constant memory with its unique index.
//
// Fingerprint identifies an input file (size and SHA-256, streamed) so a resumed run
// can tell that its input changed.
package intake
