"""The fixed prose of BENCHMARKS.md: method, what was optimised, why a target is missed."""

from __future__ import annotations

__all__ = ["GAPS", "METHOD", "OPTIMIZED"]

METHOD = """\
Method. Every figure is the median of several samples with its spread: codec and throughput
rows over rounds (range = min-max), end-to-end capacity over 1-second samples. The machine has
2 cores shared with the Redis server, PostgreSQL and, at times, other engineers' test suites:
the load averages above say how busy it was; figures move by 10-30 % between runs (the spread
columns show it), ratios measured within one run move less. Peers are pinned in the `bench`
extra of `pyproject.toml` and run with their logging off; their configuration is stated beside
each row. `--quick` runs the same code with tiny sizes to prove it works (its figures mean
nothing). Rerun: `.venv/bin/python -m bench` (about 6 minutes) or `cdb bench`."""

_CHANGES = [
    (
        "`from_fields`, Pydantic strict (market_data)",
        "the stream entry is joined into one JSON document and validated with one `validate_json` "
        "when every name is an identifier and every value exactly one JSON scalar (one compiled "
        'regex over all values; a value like `1,"side":"SELL"` falls back); anything else, and '
        "any refusal, goes through the old field-by-field path, so errors read as before",
        "13.6 us",
        "~5 us",
    ),
    (
        "`from_fields`, Pydantic lenient",
        "as above, and a message that carries `api_version` and `timestamp` is validated by the "
        "strict contract first (no variant model, no `model_construct` copy); the lenient "
        "variant only on a miss",
        "17.5 us",
        "~6 us",
    ),
    ("`from_fields`, legacy", "the same joined document through one `json.loads`", "13.6 us", "~9 us"),
    (
        "stream size check",
        '`len(b"".join(...))` instead of a generator over every field',
        "~1 us",
        "~0.2 us",
    ),
    (
        "`to_fields`, Pydantic",
        "scalars formatted directly (`float.__repr__`, `int.__repr__`, `encode_basestring`: "
        "exactly what `JSONEncoder` writes) instead of one `JSONEncoder.encode` per field; the "
        "serialiser called directly",
        "5.8 us",
        "~2.5 us",
    ),
    (
        "shadow comparison",
        "equal plain values decided at once; legacy `as_dict` without the recursive `asdict` "
        "copy for the built-in classes",
        "~24 us",
        "~3-5 us",
    ),
    (
        "signal, risk services",
        "outputs deferred and flushed once per batch before the ack (`Publisher.defer` + "
        "`before_ack=publisher.flush`) instead of one round trip per output",
        "1 round trip per output",
        "1 per batch",
    ),
]

OPTIMIZED = "\n".join(
    [
        "## What issue 11 optimised (before -> after, per message, same machine)",
        "",
        "| where | change | before | after |",
        "|---|---|---:|---:|",
        *(f"| {where} | {change} | {before} | {after} |" for where, change, before, after in _CHANGES),
        "",
        "Tests holding each shortcut to the general path: `tests/test_codec_fast_path.py` (hypothesis: "
        "the same message, defaults and refusal types/locations on both paths, including lone "
        "surrogates, huge integers, overflowing floats and smuggling attempts).",
    ]
)

GAPS = """\
## Where the time goes, and why a target is missed

Profiles: cProfile of the consumer loop and py-spy (`py-spy record -p <pid>`) of the signal process
and the benchmark's ws process during the capacity phase.

- **Shadow mode (<= 1.5x).** Shadow mode decodes every message on both paths and compares them;
  its floor is the sum of the two decoders (lenient ~6 us + legacy ~9 us per entry), already
  ~2.5x one path before any comparison, and the two decoders interleaved also run slower than
  each alone (they evict each other's caches: ~8 + ~12 us measured interleaved). Meeting 1.5x
  would need the second decoder to cost less than half the first, which no legacy decoder does;
  sampling (shadow-decode every k-th message) would, but changes what shadow mode promises
  (every message compared), so it is proposed, not made.
- **Consumer vs FastStream (>= 3x).** FastStream's batch subscriber ran at about 50,000 msg/s
  here, so 3x asks ~150,000 msg/s, i.e. under 6.7 us per message for read + decode + validate +
  ack. The transport alone (no-op codec row) costs ~6 us per entry (XREADGROUP reply parsing by
  redis-py/hiredis ~1.5 us, the per-entry loop, ledger and counting ~1.5 us, XACK packing and the
  server's own work ~2 us), and Pydantic validation of one entry ~2 us inside the loop
  (`scan_fields` ~1.5 us + `validate_json` ~1.1 us measured alone). The consumer is ~2x FastStream
  and within 0.8x of a bare redis-py loop doing the same decoding, so what is left is the
  Pydantic validation itself and the Redis round trip; the transport's own costs belong to
  `core/redis` (issue 3) and its profile is above.
- **End to end.** Capacity is what the whole 2-core machine does with ws, three service processes,
  Redis and PostgreSQL on it: in the py-spy profile the signal process spends ~35 % of its time
  in `from_fields` (of which most in Pydantic's `validate_json`), ~13 % waiting in epoll, ~10 %
  writing to the socket and ~8 % parsing replies; the ws process spends about half in
  `publish_many` (encode ~20 %, packing ~15 %) and a quarter building trades and messages
  (`Trade` checks, `model_validate`). Latency is dominated by batching: a trade waits for the
  signal consumer's current batch, the signal for the end of that batch (deferred flush), then
  risk's and execution's reads; execution stores each result in PostgreSQL before publishing it."""
