"""``cdb dlq review --through`` records only a real review point, and ``cdb cutover check``
never trusts (nor trips over) one that is not.

A point is a dead-letter id (``<ms>-<seq>``, or ``<ms>``: that whole millisecond, as
``cdb dlq show`` and ``--dlq-reviewed-before`` take it) no newer than the newest letter of
its topic: a later point would count letters parked after the review as reviewed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from typer.testing import Result

from core.errors import ContractError
from core.redis.acl import OPERATOR
from core.redis.dead_letters import DeadLetters
from core.topics import KeySpace, ServiceName, Topic
from migration.dlq_review import REVIEWED_FIELD
from tests.ops_helpers import cdb, cdb_json
from tests.test_redis_acl_live import temporary_acl_users

pytestmark = pytest.mark.integration

FUTURE = "99999999999999-0"


async def _park(redis: aioredis.Redis, keys: KeySpace, topic: Topic = Topic.SIGNALS) -> str:
    """Park one dead letter of ``topic``; its id."""
    err = ContractError(topic=topic.value, path="legacy", profile=None, raw=b"{}", errors=[])
    service = next(s for s in ServiceName if s.dead_letters is topic)
    return await DeadLetters(redis, keys).park(topic, b"{}", err, service=service, path="legacy")


def _where(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


async def _review(redis_url: str, keys: KeySpace, *args: str) -> Result:
    return await asyncio.to_thread(cdb, "dlq", "review", *args, *_where(redis_url, keys))


async def _dead_letters(redis_url: str, keys: KeySpace, *args: str) -> dict[str, Any]:
    """The dead_letters finding of ``cdb cutover check --json`` (NO-GO anyway: no instance runs)."""
    report = await asyncio.to_thread(cdb_json, "cutover", "check", *args, *_where(redis_url, keys), expect=1)
    [finding] = [f for f in report["findings"] if f["name"] == "dead_letters"]
    return finding  # type: ignore[no-any-return]


async def _recorded(redis: aioredis.Redis, keys: KeySpace, topic: Topic) -> Any:
    """The review recorded for ``topic`` as stored (``None``: never recorded)."""
    return await redis.hget(keys.dlq_replayed(topic), REVIEWED_FIELD)


@pytest.mark.parametrize("through", ["garbage", "12-x", "-1", "1767225600000-0-0", "99999999999999999999999"])
async def test_dlq_review__a_through_that_is_no_entry_id_is_a_usage_error_and_records_nothing(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, through: str
) -> None:
    await _park(redis_async, keys)
    result = await _review(redis_url, keys, "--through", through)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --through")
    assert "is not a dead-letter id" in line
    assert [await _recorded(redis_async, keys, t) for t in Topic] == [None] * len(Topic)


async def test_dlq_review__a_through_newer_than_the_newest_letter_is_refused_so_later_letters_stay_unreviewed(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    newest = await _park(redis_async, keys)
    ms = int(newest.split("-")[0])
    for args in (
        ["--through", FUTURE],
        ["--topic", "signals", "--through", FUTURE],
        ["--topic", "signals", "--through", f"{ms}-{int(newest.split('-')[1]) + 1}"],
        ["--topic", "signals", "--through", str(ms)],  # that whole millisecond: past the newest
    ):
        result = await _review(redis_url, keys, *args)
        assert result.exit_code == 2, (args, result.output)
        [line] = result.output.strip().splitlines()
        assert f"newer than the newest dead letter of signals ({newest})" in line
        assert line.endswith("nothing recorded")
    assert await _recorded(redis_async, keys, Topic.SIGNALS) is None

    await _park(redis_async, keys)  # parked after the (refused) review
    finding = await _dead_letters(redis_url, keys)
    assert (finding["ok"], finding["data"]["signals"]["unreviewed"]) == (False, 2)


async def test_dlq_review__a_future_through_on_empty_topics_records_nothing_and_a_new_letter_is_unreviewed(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    result = await _review(redis_url, keys, "--through", FUTURE)
    assert result.exit_code == 0, result.output
    assert "reviewed through" not in result.output
    assert result.output.count("empty, nothing to record") == len(Topic)

    await _park(redis_async, keys)
    finding = await _dead_letters(redis_url, keys)
    assert finding["ok"] is False
    assert finding["data"]["signals"] == {"entries": 1, "unreviewed": 1, "replayed_kept": 0}


async def test_dlq_review__a_through_up_to_the_newest_letter_is_recorded_as_given(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    first = await _park(redis_async, keys)
    await asyncio.sleep(0.005)  # the next letter in a later millisecond
    newest = await _park(redis_async, keys)

    by_ms = await asyncio.to_thread(
        cdb_json,
        "dlq",
        "review",
        "--topic",
        "signals",
        "--through",
        first.split("-")[0],
        *_where(redis_url, keys),
    )
    assert by_ms == {"signals": first.split("-")[0]}
    finding = await _dead_letters(redis_url, keys)
    assert finding["data"]["signals"]["unreviewed"] == 1  # the whole first millisecond is reviewed

    at_newest = await _review(redis_url, keys, "--topic", "signals", "--through", newest)
    assert at_newest.exit_code == 0, at_newest.output
    assert f"signals_dlq: reviewed through {newest}" in at_newest.output
    finding = await _dead_letters(redis_url, keys)
    assert finding["data"]["signals"] == {
        "entries": 2,
        "unreviewed": 0,
        "replayed_kept": 0,
        "reviewed_through": newest,
    }


@pytest.mark.parametrize("stored", ["garbage", "", " 12-0", "12-x"])
async def test_cutover_check__a_recorded_review_that_is_no_entry_id_reviews_nothing_and_says_so(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, stored: str
) -> None:
    """Written by hand, or by a `cdb dlq review --through` that took anything: the check used to
    fail with `ValueError: invalid literal for int()` on every run."""
    await _park(redis_async, keys)
    await _park(redis_async, keys)
    await redis_async.hset(keys.dlq_replayed(Topic.SIGNALS), REVIEWED_FIELD, stored)

    finding = await _dead_letters(redis_url, keys)
    signals = finding["data"]["signals"]
    assert (finding["ok"], signals["entries"], signals["unreviewed"]) == (False, 2, 2)
    if stored:  # "" is a review `cdb dlq review` cleared: nothing to say
        assert f"the recorded {stored!r} is not a dead-letter id" in signals["reviewed_through"]
        [line] = [d for d in finding["details"] if d.startswith("signals_dlq:")]
        assert "not a dead-letter id" in line
        assert "cdb dlq review --topic signals" in line

    text = await asyncio.to_thread(cdb, "cutover", "check", *_where(redis_url, keys))
    assert text.exit_code == 1, text.output
    assert "unexpected" not in text.output
    assert "NO-GO" in text.output


@pytest.mark.parametrize("stored", ["garbage", FUTURE, "1767225600000-0"])
async def test_dlq_review__on_a_topic_without_letters_clears_the_review_recorded_before(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, stored: str
) -> None:
    """The documented way out of a bad review: a plain `cdb dlq review` used to say "empty, nothing
    to record" and leave it, so a future point kept passing letters parked later."""
    await redis_async.hset(keys.dlq_replayed(Topic.SIGNALS), REVIEWED_FIELD, stored)
    result = await _review(redis_url, keys)
    assert result.exit_code == 0, result.output
    assert f"signals_dlq: empty, nothing to record (cleared the review recorded through {stored!r})" in (
        result.output
    )
    assert "orders_dlq: empty, nothing to record\n" in result.output  # nothing was recorded there
    assert await _recorded(redis_async, keys, Topic.SIGNALS) == b""
    assert await _recorded(redis_async, keys, Topic.ORDERS) is None

    await _park(redis_async, keys)
    finding = await _dead_letters(redis_url, keys)
    assert finding["data"]["signals"] == {"entries": 1, "unreviewed": 1, "replayed_kept": 0}


async def test_dlq_review__on_a_topic_with_letters_replaces_a_bad_review_with_its_newest_letter(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    newest = await _park(redis_async, keys)
    await redis_async.hset(keys.dlq_replayed(Topic.SIGNALS), REVIEWED_FIELD, "garbage")
    recorded = await asyncio.to_thread(cdb_json, "dlq", "review", *_where(redis_url, keys))
    assert recorded["signals"] == newest
    finding = await _dead_letters(redis_url, keys)
    assert finding["data"]["signals"]["reviewed_through"] == newest
    assert finding["data"]["signals"]["unreviewed"] == 0


async def test_cutover_check__a_dlq_reviewed_before_that_is_no_entry_id_is_a_one_line_usage_error(
    redis_url: str, keys: KeySpace
) -> None:
    result = await asyncio.to_thread(
        cdb, "cutover", "check", "--dlq-reviewed-before", "junk", *_where(redis_url, keys)
    )
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --dlq-reviewed-before='junk' is not accepted")
    assert "unexpected" not in line


async def test_dlq_review__the_operator_acl_user_may_clear_a_bad_review(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """`cdb dlq review` runs as cdb-operator, who may HSET the review field but not HDEL it."""
    await redis_async.hset(keys.dlq_replayed(Topic.SIGNALS), REVIEWED_FIELD, FUTURE)
    with temporary_acl_users(redis_sync, keys, redis_url) as users:
        result = await asyncio.to_thread(cdb, "dlq", "review", *_where(users.urls[OPERATOR], keys))
    assert result.exit_code == 0, result.output
    assert await _recorded(redis_async, keys, Topic.SIGNALS) == b""


async def test_dlq_list__a_recorded_review_is_not_counted_as_a_replayed_letter(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # The review point lives in the hash of replay marks; counted with them, `replayed_kept`
    # was one too high after every review.
    await _park(redis_async, keys)
    assert (await _review(redis_url, keys, "--topic", "signals")).exit_code == 0
    listed = await asyncio.to_thread(cdb_json, "dlq", "list", "--topic", "signals", *_where(redis_url, keys))
    assert listed["signals"]["replayed_kept"] == 0
    assert listed["signals"]["total"] == 1
