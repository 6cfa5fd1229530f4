"""The fixed prose of BENCHMARKS.md: method, what was optimised, why a target is missed."""

from __future__ import annotations

__all__ = ["GAPS", "METHOD", "OPTIMIZED"]

METHOD = """\
Method. Every figure is the median of several samples with its spread: codec and throughput
rows over rounds (range = min-max), end-to-end capacity over 1-second samples. Target ratios
are medians of round-by-round ratios (both rows measured in the same round), so a load swing
moves both sides. The machine has 2 cores shared with Redis, PostgreSQL and other engineers'
test suites, so: each round starts only once the rest of the machine is idle (see above); the
throughput rows run in a new (seeded) order each round; an end-to-end setting during which
other processes took more than 15 % of the CPU is run again (up to 3 attempts); the
benchmark's own pre-built input messages are kept out of the garbage collector's passes
(`gc.freeze`, every row alike). Figures still move by 5-15 % between runs; a ratio within a
few per cent of its target can land on either side. Peers are pinned in the `bench` extra of
`pyproject.toml` and run with their logging off; their configuration is stated beside each
row. `--quick` runs the same code with tiny sizes to prove it works (its figures mean
nothing). Rerun: `.venv/bin/python -m bench` (7-15 minutes, depending on how long it waits for
quiet) or `cdb bench`."""

_CHANGES = [
    (
        "`from_fields`, Pydantic strict",
        "the stream entry is joined into one JSON document and validated with one `validate_json` "
        "when every name is an identifier and every value exactly one JSON scalar (one compiled "
        'regex over all values; a value like `1,"side":"SELL"` falls back); anything else, and '
        "any refusal, goes through the old field-by-field path, so errors read as before",
        "14.6 us",
        "4.6 us",
    ),
    (
        "`from_fields`, Pydantic lenient",
        "as above, and a message that carries `api_version` and `timestamp` is validated by the "
        "strict contract first (no variant model, no `model_construct` copy); the lenient "
        "variant only on a miss",
        "21.0 us",
        "5.2 us",
    ),
    ("`from_fields`, legacy", "the same joined document through one `json.loads`", "15.7 us", "9.0 us"),
    (
        "`to_fields`, Pydantic strict",
        "scalars formatted directly (`float.__repr__`, `int.__repr__`, `encode_basestring`: "
        "exactly what `JSONEncoder` writes) instead of one `JSONEncoder.encode` per field; a "
        "contract without custom serialisers encoded from its attributes",
        "7.3 us",
        "2.0 us",
    ),
    ("`to_fields`, legacy", "the same scalar formatting (its `to_dict()` is kept)", "10.1 us", "7.5 us"),
    (
        "shadow `from_fields` (lenient + legacy)",
        "both decoders faster; equal plain values decided at once; legacy `as_dict` without the "
        "recursive `asdict` copy for the built-in classes",
        "67.9 us",
        "26.7 us",
    ),
    (
        "signal, risk services",
        "outputs deferred and flushed once per batch before the ack (`Publisher.defer` + "
        "`before_ack=publisher.flush`) instead of one round trip per output; execution "
        "publishes its batch's results in one pipeline of scripts (it needs the stream ids)",
        "1 round trip per output",
        "1 per batch",
    ),
    (
        "ws per market_data message (trade -> build -> encode -> pack -> publish, in process)",
        "the contract's validator called directly; the XADD field part from one template per set of "
        "field names when all ASCII; publish replies read from hiredis's buffer; a valid `Trade` "
        "passes each check in one test (callgrind instructions, n vs 2n messages)",
        "188,850 instr.",
        "147,416 instr.",
    ),
    (
        "signal per market_data message (consume, decode, strategy, outputs, in process)",
        "shared outcome constants when a trade fires nothing; no dict per message for the "
        "versioned codec's seen-times (callgrind instructions)",
        "129,053 instr.",
        "117,654 instr.",
    ),
    (
        "in-process shadow, sample 1/10 (from_fields + encode)",
        "the primary's own methods for the unsampled 9 in 10; sampling decided inline; agreement "
        "on plainly equal attributes before any plain form is built (callgrind instructions)",
        "111,240 instr. (1.20x)",
        "107,400 instr. (1.16x)",
    ),
    (
        "`cdb shadow` comparator, per entry",
        "counts to the metrics once per batch; the next batch read while one is compared; the same "
        "quick agreement check (callgrind instructions)",
        "232,312 instr.",
        "185,739 instr.",
    ),
    (
        "execution service",
        "one PostgreSQL statement per batch (`INSERT ... SELECT FROM unnest ... ON CONFLICT DO "
        "NOTHING RETURNING`, the rows already there read in the same statement) and one Redis round "
        "trip for the batch's publish scripts (`ExecutionService.finish_batch`), instead of a "
        "`SELECT`, an `INSERT` and a script per order; the batch's marks in one `UPDATE` before its "
        "ack (`services/execution/marks.py`) instead of one per order",
        "3 statements (commits) + 1 round trip per order",
        "2 statements + 1 round trip per batch",
    ),
    (
        "signal and ws per market_data message, as `cdb service` runs them (`python -m "
        "bench.hot_path measure`: callgrind, 10,000 vs 20,000 messages, real Redis, fenced reads)",
        "the collector set for a long run (`services.runtime.service_gc`); publish replies read "
        "from hiredis's buffer under RESP3 too (redis-py 8 speaks RESP3: the fast reader never ran "
        "before); the fenced ack packed by hand; rewind detection parses one id per batch; "
        "`Decoded` and `Trade` set their fields directly; `bytes.find` instead of `in` (which "
        "raised and dropped a TypeError on every test in CPython 3.11)",
        "signal 123,924, ws 150,466 instr.",
        "signal 106,205, ws 121,496 instr.",
    ),
    (
        "consumer, one busy batch (unfenced)",
        "the batch's XACK sent with the next XREADGROUP in one pipelined round trip; replies "
        "turned into entries in one comprehension; XACK packed from a cached head; the ledger "
        "counts handled entries in an int (`tests/test_consumer_round_trips.py`)",
        "2 round trips",
        "1 round trip",
    ),
    (
        "one fenced poll cycle of one entry (read, lease check, ack; every consuming service, "
        "as soon as it runs against a real Redis)",
        "the fence's ~2 KB script sent by its hash (`EVALSHA`; the source only to a server that "
        "answers `NOSCRIPT`, `core/redis/scripts.py`) and on the transport's own wire path "
        "instead of redis-py's `execute_command`; a Redis call builds tenacity's retry loop "
        "only after a first attempt failed (callgrind instructions of the client, 300 vs 600 "
        "cycles; the server's time per cycle from `INFO commandstats`)",
        "1,642,088 instr., server 34.1 us",
        "1,245,078 instr., server 30.8 us",
    ),
    (
        "a full garbage collection in a service process",
        "the objects alive once the service is set up (~75,000: modules, classes, compiled "
        "contracts) frozen out of the collector's passes while it runs "
        "(`services.runtime.service_gc`, with young passes 15x rarer); signal had 27 full "
        "passes in one 80-s run, each stalling every message in flight",
        "25-35 ms idle, 55-70 ms under load",
        "0.6 ms",
    ),
]

OPTIMIZED = "\n".join(
    [
        "## What was optimised (before -> after)",
        "",
        "Codec rows: one market_data message, median of 7 timings of 20,000 calls, the commit before "
        "(714c0d9) and after, measured back to back on this machine. Rows in instructions: "
        "`valgrind --tool=callgrind`, n and 2n messages, the difference per message (repeatable "
        "whatever else runs), before = commit 397425b.",
        "",
        "| where | change | before | after |",
        "|---|---|---:|---:|",
        *(f"| {where} | {change} | {before} | {after} |" for where, change, before, after in _CHANGES),
        "",
        "Tests holding each shortcut to the general path: `tests/test_codec_fast_path.py` (hypothesis: "
        "the same message, defaults and refusal types/locations on both paths, including lone "
        "surrogates, huge integers, overflowing floats and smuggling attempts; `to_fields` text and "
        'order equal to encoding `model_dump(mode="json")`).',
    ]
)

GAPS = """\
## Where the time goes, and why a target is missed

From cProfile of the consumer and publisher loops and py-spy (`py-spy record -p <pid>`) of the
signal process and of the benchmark's ws process during the capacity phase. The tables above
are the figures of record; the microsecond splits below come from those profiling runs.

- **Shadow mode (<= 1.5x).** In-process shadow mode decodes every message on both paths and
  compares them, so its floor is the sum of the two decoders: lenient ~5 us + legacy ~9 us per
  entry, already ~2.7x one path before any comparison; interleaved, the two decoders also run
  slower than each alone (they evict each other from the CPU caches), and the comparison adds
  ~3 us. Two ways around it now exist, each in its own row: `CONTRACT_SHADOW_SAMPLE=1/10`
  decodes every tenth message twice (picked by a hash of the entry id), and `cdb shadow
  SERVICE` does the whole comparison out of band in a process and consumer group of its own,
  so the service pays nothing. On a 2-core machine that process still takes CPU the pipeline
  would otherwise use (its cost per message is in the shadow table of section 4): the
  service's own cost is unchanged, the machine's total is not. In this run signal's CPU with
  the comparator running read 1.06x (11.2 vs 10.6 us; 1.00x in the run before): signal alone
  read 9.7-10.6 us over four quick runs on this machine, so the 0.01x over the target is
  within that spread. At full speed the pipeline outruns the comparator on 2 cores: its
  backlog after the capacity phase was 254,000 entries, near the benchmark's stream bound
  (300,000); an earlier attempt passed it, ~7,000 entries were trimmed before it compared them,
  and Redis 7.0 then reported a lag that never went away (fixed on our side: a group's backlog
  is asked of the stream when Redis's lag is not 0). At 20,000 msg/s it keeps up.
- **Consumer (met: >= 0.97x the bare loop, >= 2x FastStream).** What the consumer does beyond a
  bare redis-py loop (ledger, metrics, dead-letter bookkeeping, own-pending and reclaim checks)
  used to cost it ~0.3 ms per batch and a few per cent; three changes put it level or ahead: a
  busy batch's XACK goes with the next XREADGROUP in one pipelined round trip (one round trip
  per batch where the bare loop makes two; a consumer that caught up sends it with its wait
  for the next entries; an owed ack is sent on its own before any reclaim, take-over, backlog
  report and at the stop), the reply is turned into entries
  in one comprehension (~0.35 us an entry; redis-py's parse ~1 us) and the ledger counts
  handled entries in an int. Fenced consumers (partitioned services) acknowledged each batch
  in its own script call in this run; they now carry the ack inside the next read's
  lease-checking script. FastStream's batch subscriber runs at ~45,000-55,000 msg/s here; the
  consumer decodes with Pydantic at ~100,000.
- **publish_many vs FastStream pipelined (met, >= 3x).** publish_many costs ~9-10 us per
  message: encode ~2.8 us (body 0.8 + stream entry 2.0), packing (one template format per
  all-ASCII message) and the replies read straight from hiredis's buffer, which before this run
  happened only under RESP2: redis-py 8 speaks RESP3, so the fast reader never ran; it now
  reads RESP3 too (push messages handed to redis-py's parser). FastStream's row writes one
  command per message (XADD) to our two (PUBLISH + XADD); doing the same work (the context
  row) publish_many is ~6x.
- **End to end.** Capacity is what the whole 2-core machine does with ws, three service
  processes, Redis and PostgreSQL on it, and it is CPU-bound: 2 cores divided by the CPU the
  processes spend per market_data message (section 4: 24.1 us for the pipeline plus 6.7 us for
  Redis) is a ceiling of ~65,000 msg/s; the median of 1-s samples, 50,920 (46,443-55,691), is
  ~78 % of it (the rest: PostgreSQL, the benchmark's own counting and progress, the kernel).
  The committed run before (2026-11-30 20:21 UTC, a machine on which msgspec took 1.1x as
  long) measured 30.6 + 7.8 us and 42,848 msg/s. Since the run of
  2026-11-30 13:36 UTC (71.2 us) the cuts were: ws and signal instructions (section "What was optimised"), the
  fence's script by hash on the wire path, the collector kept off start-up objects, the
  consumer's reply parsing. callgrind of signal (`bench.hot_path`): most of what is left is
  interpreter work per entry (decode: `scan_fields` with its JSON-scalar regex, `validate_json`; the
  strategy; the deferred signal's encode). With a legacy ws (all-legacy, mixed) the ws process
  is the limit: the legacy encode (`to_dict()` = `dataclasses.asdict` plus JSON, ~16 us per
  message) is its largest cost.

  Latency is round trips and batches. Per hop, an idle consumer waits in a group-less
  `XREAD BLOCK` with the fenced read pipelined behind it (the server runs the read the moment
  the wait ends: waking and taking are one round trip), handles the entries, and sends their
  outputs in a script that checks the lease first (one round trip, no `GET` of its own; on a
  cluster a `GET` before them); a consumer that caught up (its read was not a full batch)
  sends the batch's ack, its wait for the next entries and the read behind it in one round trip
  (the ack runs before the wait; an entry that came meanwhile ends the wait at once). Going
  idle after a batch cost three round trips before 2026-12-01 (the read carrying the ack, a
  second read, the wait with its read), then two, now one. At 1,000 msg/s, where signal wakes
  hundreds of times a second, each step cut the services' CPU on slower machines (2 and 2
  runs alternated, ms of CPU a second): three -> two: signal 468 / 477 -> 395 / 393, risk
  -15 %, execution -9 %; two -> one (another machine, Python 3.7x slower than this run's):
  signal 430 / 414 -> 362 / 348, risk 94 / 98 -> 85 / 77, Redis 155 / 147 -> 131 / 131,
  md -> result mean 9.84 / 9.72 -> 9.34 / 9.06 ms, capacity unchanged. Execution commits the batch's
  rows (one durable commit: ~0.85 ms here when the disk is idle, 3.2 ms on a slower machine, so
  this floor is the machine's), then publishes once per order in a script that checks the
  lease first (since 2026-12-01; it used to read the lease with a `GET` of its own before the
  store: one cold round trip more per order at a low rate. A slower machine, PING 3.9x, quick
  runs at 1,000 msg/s alternated 3 and 3: order -> result mean 5.69 -> 4.88 ms, md -> result
  mean 9.43 -> 8.35 ms). Probed in process (one execution process, 20 orders/s, this machine): order ->
  result 2.0 ms mean (1-ms ids: 1 ms 7 %, 2 ms 87 %, 3 ms 6 %), ~0.75 ms of it the process's
  own CPU (py-spy: the v1.0 -> v2.0 decode 0.11 ms, the insert's parameters 0.10 ms, the
  publish script 0.17 ms, asyncio ~60 us a round trip). Same machine, quick runs at 1,000
  msg/s (30 s, ~275 samples each), mean of the 1-ms md->result differences: 3.84 / 3.16 ms
  before the pipelined wake and the guarded outputs, 2.75 / 2.42 / 3.38 / 3.13 ms after; p99
  4-7 ms either way. In this run the 1,000 msg/s point came right after the 20,000 msg/s
  phase: p50 / p99 4 / 7 ms over 313 samples, hops signal 1.0 / 2.4, risk 1.5 / 3.9,
  execution 5.9 / 9.1 (its hop ends at the ack, after the marks' commit; 3.5-4.0 ms p50 in
  the steady quick runs). A quick run in the same order (20,000 then 1,000) reproduced it
  (execution 5.9 / 8.3), but execution alone was not slower after a burst (the in-process
  probe after 5,000 orders: 2.1-2.5 ms mean order -> result, as without one), so what slows
  the hop after the 20,000 msg/s phase is elsewhere on the shared machine and not yet found.
  What is left on execution's path is deliberate: one durable commit before the publish
  (store-first). At a low rate that commit costs more than it does back to back: measured
  alone on another machine (PING 1.6x this run's), one insert and commit every 110 ms (an
  order every ~110 ms, as at 1,000 msg/s) took 1.75 ms mean against 0.64 ms every 5 ms, and
  0.66 ms with the flush left out (asynchronous commit, which the store does not use): ~1.1 ms
  of every low-rate order's path is the WAL flush after idle. Since 2026-12-01 a batch of one
  is stored with plain parameters instead of ten one-element arrays (0.79 -> 0.66 ms of it).
  The whole pipeline says the same (another machine, quick runs at 1,000 msg/s alternated 2
  and 2, the flush left out ad hoc with `synchronous_commit=off` on execution's connection):
  order -> result mean 2.85 / 2.61 -> 2.06 / 1.66 ms, its p99 6 / 6 -> 3 / 3 ms, md -> result
  p99 8 / 7 -> 7 / 5 ms. The durable commit is half of execution's tail at a low rate, and
  without it that machine's p99 still did not go below 5 ms: the rest is three wakes of
  processes that share two cores with the load.
  At 20,000 msg/s: p50 / p95 / p99 6 / 10 / 13 ms over 5,584
  samples (signal 3.0 / 7.5, risk 2.0 / 4.9, execution 4.6 / 10.0). Before the collector was
  kept off the start-up objects, every full pass in signal stalled all messages in flight for
  55-70 ms (27 passes in one run), which was most of the old 107 ms p99.

  How the latency figures get thousands of samples without changing what the pipeline does.
  Risk keeps its default limits, so once exposure (shared by every symbol) is full, most
  signals are rejected and only a few hundred trades a run make an order. (1) Every hop is
  measured on every message: each consumer counts, for every entry it acknowledges, the time
  from the entry's XADD to the end of its batch (`cdb_consume_latency_seconds`, ~0.2 us an
  entry counted per batch in plain integers; prometheus-client's own `observe` would cost
  ~1.2 us), so signal's hop rests on every trade and risk's on every signal. (2) In the
  latency phases every 5th trade (`--probe-every`) is a probe symbol's whose prices make the
  strategy fire a BUY, SELL, BUY ... that flips one position between +h and -h: a flip does not
  grow the position, so risk approves it under the default limits even with exposure full
  (`bench/e2e_probe.py`; the first, half-size order is made before the capacity phase, with an
  empty book). One order per 21 probe trades: at 20,000 msg/s offered that is ~190 orders/s,
  ~5,500 in a 30-s phase after its warm-up; lifting the limits (`--lift-limits`) makes every
  signal an order (~4 % of trades, ~800/s), a stress of execution's PostgreSQL writes. The
  consumers already batch by what is there: a read returns at once with whatever entries are
  waiting (up to the batch size), blocking only when nothing was handled, and the outputs go
  out at the end of that batch; ws's outbox sends whatever is queued as soon as the previous
  send returned (tests/test_adaptive_batching.py); the latency curve shows how the wait grows
  with the offered rate."""
