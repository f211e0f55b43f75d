#!/usr/bin/env bash
# Batch mode at scale (docs/benchmarks.md): peak RSS and wall time of a `clade batch`
# process (built without -race) against a separate `clade emulate` process on a fast
# clock, for each request count given (default 62500 125000 250000 500000).
#
#   scripts/batch-scale.sh                  # all four sizes
#   scripts/batch-scale.sh 250000           # one size
#   CLOCK=100 RATE=42 scripts/batch-scale.sh
#   CLADE=/path/to/other/clade scripts/batch-scale.sh 250000   # another build
#
# The emulator processes RATE requests per emulated second at CLOCK emulated seconds
# per real second (default 42 × 100 = 4,200 requests per real second, all batches
# sharing one queue, as the API's processing queue). A fresh emulator serves each run.
#
# Columns:
#   wall        the clade process, start to exit (/usr/bin/time)
#   rss         its peak resident set size (/usr/bin/time %M)
#   processing  the emulator's processing time: from the first batch's created_at to
#               the last batch's ended_at, as the emulator reports them, divided by CLOCK
#   over        wall / processing - 1: clade's own time, as a fraction of processing
#   before      from clade's start to the first batch's created_at (import, first body)
#   after       from the last batch's ended_at to clade's exit (poll lag, last ingest)
set -euo pipefail

CLOCK=${CLOCK:-100}
RATE=${RATE:-42}
PORT=${PORT:-18291}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(62500 125000 250000 500000)
DIR=${DIR:-$(mktemp -d /tmp/clade-batch-scale.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
URL=http://127.0.0.1:$PORT
KEY=sk-ant-batch-scale
export ANTHROPIC_API_KEY=$KEY ANTHROPIC_BASE_URL=

mkdir -p "$DIR"
if [ -n "${CLADE:-}" ]; then cp "$CLADE" "$DIR/clade"; else (cd "$ROOT" && go build -o "$DIR/clade" ./cmd/clade); fi
echo "dir $DIR, commit $(cd "$ROOT" && git rev-parse --short HEAD), clock ${CLOCK}x, rate $RATE/s emulated ($((CLOCK * RATE)) requests per real second)"
printf '%-8s %-8s %-9s %-8s %-11s %-7s %-8s %-8s\n' requests batches wall rss processing over before after

emu_now() { curl -sf -X POST -d '{"advance":"0s"}' "$URL/_emulator/clock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["now"])'; }

for n in "${SIZES[@]}"; do
  in=$DIR/in-$n.jsonl out=$DIR/out-$n.jsonl
  [ -f "$in" ] || seq 0 $((n - 1)) | awk '{printf "{\"custom_id\":\"job-%07d\",\"params\":{\"model\":\"haiku\",\"max_tokens\":48,\"messages\":[{\"role\":\"user\",\"content\":\"item %d\"}]}}\n", $1, $1}' > "$in"
  rm -f "$out" "$out".clade.db*
  "$DIR/clade" emulate --tier tier-4 --latency-scale 0 --addr "127.0.0.1:$PORT" --clock-speed "$CLOCK" --batch-rate "$RATE" > "$DIR/emulate-$n.log" 2>&1 &
  emu=$!
  for _ in $(seq 50); do curl -sf "$URL/_emulator/health" > /dev/null && break; sleep 0.1; done
  t0=$(emu_now)
  /usr/bin/time -f '%e %M' -o "$DIR/time-$n" "$DIR/clade" batch "$in" -o "$out" ${DB:+--db "$DB"} --base-url "$URL" --tier tier-4 -q 2> "$DIR/batch-$n.log"
  curl -sf -H "x-api-key: $KEY" -H 'anthropic-version: 2023-06-01' "$URL/v1/messages/batches?limit=1000" > "$DIR/batches-$n.json"
  kill "$emu"; wait "$emu" 2> /dev/null || true
  lines=$(wc -l < "$out")
  [ "$lines" -eq "$n" ] || { echo "requests $n: $lines result lines" >&2; exit 1; }
  python3 - "$n" "$CLOCK" "$t0" "$DIR/time-$n" "$DIR/batches-$n.json" <<'PY'
import json, sys
from datetime import datetime
n, clock, t0, timef, batchesf = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
wall, rss = open(timef).read().split()[-2:]
wall = float(wall)
bs = json.load(open(batchesf))["data"]
first = min(ts(b["created_at"]) for b in bs)
last = max(ts(b["ended_at"]) for b in bs)
proc = (last - first) / clock
before = (first - ts(t0)) / clock
after = wall - (last - ts(t0)) / clock
print(f"{n:<8} {len(bs):<8} {wall:<9.1f} {int(rss)/1024:<8.0f} {proc:<11.1f} {wall/proc-1:<+7.1%} {before:<8.1f} {after:<8.1f}")
PY
done
