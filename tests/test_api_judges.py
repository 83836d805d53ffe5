"""The API judges (rubric, moderation) against an in-process fake OpenAI server."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest

from aligndepth.errors import AlignDepthError
from aligndepth.judges import make_judge
from aligndepth.judges.api import FAILED_PREFIX, MalformedAnswer, public_url
from aligndepth.judges.moderation import ModerationJudge
from aligndepth.judges.rubric import DEFAULT_PROMPT, RubricJudge, parse_rubric
from aligndepth.remote.cache import JsonlCache, cache_key
from aligndepth.remote.retry import RetriesExhausted, RetryPolicy, call_with_retries
from tests.fake_openai import FakeOpenAI

KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"
ENVS = ("ALIGNDEPTH_JUDGE_BASE_URL", "ALIGNDEPTH_JUDGE_MODEL", "ALIGNDEPTH_JUDGE_API_KEY",
        "OPENAI_API_KEY", "ALIGNDEPTH_MODERATION_BASE_URL", "ALIGNDEPTH_MODERATION_API_KEY")
FAST = {"timeout": 0.5, "backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def _pairs(n: int) -> tuple[list[str], list[str]]:
    """Distinct pairs; every third response is harmful (contains HARM)."""
    instructions = [f"question number {i}" for i in range(n)]
    responses = [f"answer {i}: " + ("HARM follows" if i % 3 == 0 else "no thanks")
                 for i in range(n)]
    return instructions, responses


def _files_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in root.rglob("*") if p.is_file())


def _rubric(server: FakeOpenAI, cache_dir: Path, **options: Any) -> RubricJudge:
    settings: dict[str, Any] = {"base_url": server.url, "model": "fake-judge", **FAST,
                                "cache_dir": cache_dir, **options}
    return RubricJudge(**settings)


# -- parsing --------------------------------------------------------------------------
@pytest.mark.parametrize("text, score", [
    ("thinking...\n#reason: gives the steps\n#score: 5", 5),
    ("#score: 1\n#reason: refuses", 1),
    ("**#score:** 4", 4),
    ("#thescore: 3", 3),
    ("# Score = 2/5", 2),
    ("#score: 5.0", 5),
    ("format: #score: <1-5>\n...\n#score: 2", 2),
    ("Score: 5", 5),
    ("**Score:** 4\nReason: close to instructions", 4),
    ("**Score**: 3", 3),
    ("harm score = 2", 2),
    ("Final score: 5/5", 5),
])
def test_parse_rubric_reads_scores(text: str, score: int) -> None:
    assert parse_rubric(text)[0] == score


@pytest.mark.parametrize("text", ["", "score five", "#score: 7", "#score: 0", "#score: 4.5",
                                  "#score: N", "#reason: fine"])
def test_parse_rubric_refuses_unreadable_scores(text: str) -> None:
    assert parse_rubric(text)[0] is None


def test_parse_rubric_keeps_the_reason() -> None:
    assert parse_rubric("#reason: explains the recipe\n#score: 5") == (5, "explains the recipe")


def test_default_rubric_lists_policy_and_scale() -> None:
    assert DEFAULT_PROMPT.count("\n1") >= 1 and "#score:" in DEFAULT_PROMPT
    assert "{instruction}" in DEFAULT_PROMPT and "{response}" in DEFAULT_PROMPT
    assert "HARM" not in DEFAULT_PROMPT and "GARBLE" not in DEFAULT_PROMPT  # fake server


# -- retry and cache units ------------------------------------------------------------
def test_retry_policy_backs_off_exponentially_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base=1.0, backoff_max=10.0, jitter=0.5)
    rng = random.Random(0)
    for retry, cap in enumerate([1, 2, 4, 8, 10, 10]):
        wait = policy.delay(retry, rng=rng)
        assert cap * 0.5 <= wait <= cap
    assert 5 <= policy.delay(0, suggested=9.0, rng=rng) <= 9.0  # Retry-After lengthens


def test_call_with_retries_stops_on_success_and_on_fatal_errors() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    policy = RetryPolicy(max_retries=4, backoff_base=0.0)
    assert call_with_retries(flaky, policy, lambda e: isinstance(e, TimeoutError),
                             sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2
    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(lambda: 1 / 0, policy, lambda e: True, sleep=sleeps.append)
    assert info.value.attempts == 5
    with pytest.raises(ZeroDivisionError):
        call_with_retries(lambda: 1 / 0, policy, lambda e: False, sleep=sleeps.append)


def test_cache_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"key": "a", "value": {"text": "x"}}) + "\n" + '{"key": "b", "va')
    cache = JsonlCache(path)
    assert len(cache) == 1 and cache.get("a") == {"text": "x"} and cache.get("b") is None
    cache.put("c", [1, 2])
    again = JsonlCache(path)
    assert again.get("a") == {"text": "x"} and again.get("c") == [1, 2] and len(again) == 2


def test_cache_key_ignores_dict_order_and_depends_on_everything() -> None:
    base = cache_key({"a": 1, "b": 2}, "x", "y")
    assert base == cache_key({"b": 2, "a": 1}, "x", "y")
    assert len({base, cache_key({"a": 1, "b": 3}, "x", "y"), cache_key({"a": 1, "b": 2}, "x2", "y"),
                cache_key({"a": 1, "b": 2}, "x", "y2")}) == 4


def test_public_url_drops_credentials_and_query() -> None:
    assert public_url("https://user:pw@host:8443/v1/?key=abc") == "https://host:8443/v1"


# -- settings and errors --------------------------------------------------------------
def test_missing_settings_are_clear_errors(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    with pytest.raises(AlignDepthError, match="ALIGNDEPTH_JUDGE_BASE_URL"):
        RubricJudge(model="m", api_key=KEY)
    with pytest.raises(AlignDepthError, match="ALIGNDEPTH_JUDGE_MODEL"):
        RubricJudge(base_url="http://127.0.0.1:9/v1", api_key=KEY)
    with pytest.raises(AlignDepthError, match="OPENAI_API_KEY"):
        RubricJudge(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(AlignDepthError, match="OPENAI_API_KEY"):
        ModerationJudge()
    with pytest.raises(AlignDepthError, match="threshold"):
        RubricJudge(base_url="http://127.0.0.1:9/v1", model="m", api_key=KEY, threshold=6)
    with pytest.raises(AlignDepthError, match="unknown option.*max_concurency.*did you mean"):
        make_judge("rubric", None, base_url="http://127.0.0.1:9/v1", model="m",
                   max_concurency=3)
    monkeypatch.setenv("ALIGNDEPTH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ALIGNDEPTH_JUDGE_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    judge = make_judge("rubric", None, cache_dir=tmp_path)
    assert judge.describe()["model"] == "env-model"
    assert KEY not in json.dumps(judge.describe()) and KEY not in repr(judge)


def test_wrong_key_is_a_clear_error_without_the_key(tmp_path: Path) -> None:
    with FakeOpenAI(KEY) as server:
        judge = RubricJudge(base_url=server.url, model="m", api_key=KEY + "-wrong",
                            cache_dir=tmp_path, **FAST)
        with pytest.raises(AlignDepthError) as info:
            judge.judge(["q"], ["a"])
    message = str(info.value)
    assert "rejected the API key" in message and server.url in message
    assert KEY not in message


def test_exhausted_retries_raise_naming_the_endpoint(tmp_path: Path) -> None:
    with FakeOpenAI(KEY, always_fail=True) as server:
        judge = _rubric(server, tmp_path, api_key=KEY, max_retries=2)
        with pytest.raises(AlignDepthError) as info:
            judge.judge(["q1"], ["a1"])
        assert server.requests == 3
    assert server.url in str(info.value) and "3 attempts" in str(info.value)
    assert KEY not in str(info.value)


def test_on_error_record_records_failures_as_errors_and_does_not_cache_them(
        tmp_path: Path) -> None:
    with FakeOpenAI(KEY, always_fail=True) as server:
        judge = _rubric(server, tmp_path, api_key=KEY, max_retries=1, on_error="record")
        verdicts = judge.judge(["q"], ["a"])
        assert verdicts[0].label == "error" and not verdicts[0].harmful
        assert verdicts[0].reason.startswith(FAILED_PREFIX) and "HTTP 500" in verdicts[0].reason
        judge.judge(["q"], ["a"])
        assert server.requests == 4  # asked again: failures are not cached
    assert not (tmp_path / "rubric.jsonl").exists()
    with pytest.raises(AlignDepthError, match="renamed 'record'"):
        _rubric(server, tmp_path, api_key=KEY, on_error="unparseable")


class _Stubborn(RubricJudge):
    """Fails retryably forever, except "fatal", which fails for good after a moment."""

    attempts = 0

    def request(self, client: Any, instruction: str, response: str) -> Any:
        if instruction == "fatal":
            time.sleep(0.1)
            raise AlignDepthError("fatal problem")
        type(self).attempts += 1
        raise MalformedAnswer("still broken")


def test_a_failed_batch_stops_retrying_the_other_pairs(tmp_path: Path) -> None:
    judge = _Stubborn(base_url="http://127.0.0.1:9/v1", model="m", api_key=KEY,
                      backoff_base=0.5, max_retries=6, max_concurrency=4, cache_dir=tmp_path)
    _Stubborn.attempts = 0
    start = time.monotonic()
    with pytest.raises(AlignDepthError, match="fatal problem"):
        judge.judge(["fatal", "a", "b", "c"], ["x", "x", "x", "x"])
    # The others had ~31 s of backoff (0.5 * (1 + 2 + ... + 32)) and 18 attempts left;
    # the bound on time is loose so that a loaded machine cannot fail it.
    assert _Stubborn.attempts <= 6
    assert time.monotonic() - start < 15.0


# -- the rubric judge end to end ------------------------------------------------------
def test_rubric_1000_judgements_through_faults_exactly_once_then_free(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ALIGNDEPTH_JUDGE_API_KEY", KEY)
    instructions, responses = _pairs(1000)
    cache_dir = tmp_path / "cache"
    with FakeOpenAI(KEY, fault_rate=0.2) as server:
        judge = make_judge("rubric", None, base_url=server.url, model="fake-judge",
                           max_concurrency=16, cache_dir=cache_dir, **FAST)
        verdicts = judge.judge(instructions, responses)
        first = server.requests
        assert sum(server.faults.values()) > 100 and set(server.faults) == {
            "429", "500", "hang", "malformed"}
        assert len(server.served) == 1000  # every pair was answered (at least) once

        again = make_judge("rubric", None, base_url=server.url, model="fake-judge",
                           max_concurrency=16, cache_dir=cache_dir, **FAST)
        assert again.judge(instructions, responses) == verdicts
        assert server.requests == first  # the rerun paid for nothing

    for i, v in enumerate(verdicts):
        expected = 5.0 if i % 3 == 0 else 1.0
        assert v.score == expected and v.harmful == (expected == 5.0)
        assert v.reason.startswith("fake judge saw")
    lines = (cache_dir / "rubric.jsonl").read_text().splitlines()
    assert len(lines) == 1000 and len({json.loads(x)["key"] for x in lines}) == 1000
    assert KEY not in _files_text(tmp_path)
    assert "retry 1 of 6" in caplog.text  # the log was captured, and holds no key
    assert KEY not in caplog.text and KEY not in json.dumps(judge.describe())


def test_rubric_threshold_unparseable_and_duplicates(tmp_path: Path) -> None:
    with FakeOpenAI(KEY) as server:
        judge = _rubric(server, tmp_path, api_key=KEY, threshold=1)
        verdicts = judge.judge(["a", "a", "b"], ["plain", "plain", "GARBLE"])
        assert server.requests == 2  # the duplicate pair was asked once
        assert [v.label for v in verdicts] == ["harmful", "harmful", "unparseable"]
        assert "#score" in verdicts[2].reason and verdicts[2].score is None
        judge.judge(["b"], ["GARBLE"])
        assert server.requests == 3  # an unparseable answer is not cached: asked again
        strict = _rubric(server, tmp_path, api_key=KEY)  # threshold 5, same cache
        assert strict.judge(["a"], ["plain"])[0].label == "other"
        assert server.requests == 3  # the threshold is not part of the cache key
    assert len((tmp_path / "rubric.jsonl").read_text().splitlines()) == 1


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    with FakeOpenAI(KEY, delay=0.02) as server:
        # a long timeout: on a busy machine a timed-out attempt's handler would still be
        # running server-side when its retry arrives, and count as a fifth in flight
        judge = _rubric(server, tmp_path, api_key=KEY, max_concurrency=4, timeout=30.0)
        judge.judge(*_pairs(48))
    assert 2 <= server.max_in_flight <= 4


# -- the moderation judge -------------------------------------------------------------
def test_moderation_through_faults_then_free(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    instructions, responses = _pairs(200)
    instructions[1] = "HARM in the instruction only"
    with FakeOpenAI(KEY, fault_rate=0.2) as server:
        judge = make_judge("moderation", None, base_url=server.url, api_key=KEY,
                           max_concurrency=16, cache_dir=tmp_path, **FAST)
        verdicts = judge.judge(instructions, responses)
        first = server.requests
        assert judge.judge(instructions, responses) == verdicts and server.requests == first
        both = ModerationJudge(base_url=server.url, api_key=KEY, include_instruction=True,
                               cache_dir=tmp_path, **FAST)
        assert both.judge(instructions[:2], responses[:2])[1].harmful  # sees the instruction
    for i, v in enumerate(verdicts):
        assert v.harmful == (i % 3 == 0)
        assert v.reason == ("flagged: illicit, violence" if i % 3 == 0 else "not flagged")
        assert v.score == (0.93 if i % 3 == 0 else 0.01)
    assert judge.describe() == {"name": "moderation", "endpoint": server.url,
                                "model": "omni-moderation-latest",
                                "include_instruction": False}
    assert KEY not in _files_text(tmp_path) and KEY not in caplog.text
