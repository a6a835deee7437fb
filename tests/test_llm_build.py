"""Builds with the LLM stage on, against a local OpenAI-compatible server started by the test: the
rows carry LLM text only when it is grounded, a re-run sends no request, an endpoint that fails mid-run
gives template fallbacks (or a clean stop that a re-run finishes), and the API key appears nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI, Reply

from pipeline.cli import main
from pipeline.report.html import write_report

pytestmark = pytest.mark.slow
KEY = "sk-test-9f8e7d6c5b4a-NEVER-WRITTEN"


def rows(out: Path) -> list[dict]:
    table = pq.ParquetDataset(sorted((out / "data").glob("*.parquet"))).read(
        columns=["sample_id", "task", "conversations", "text_source", "llm_status", "llm_detail",
                 "grounding_verdict"])
    return sorted(table.to_pylist(), key=lambda r: r["sample_id"])


def build(out: Path, server: FakeOpenAI, cache: Path, *extra: str) -> int:
    return main(["build", "--no-progress", "-o", str(out), "--limit", "8",
                 "--set", "llm.enabled=true", "--set", f"llm.base_url={server.base_url}",
                 "--set", f"llm.cache_dir={cache}", "--set", "llm.api_key_env=FEA_TEST_KEY",
                 "--set", "llm.max_retries=0", "--set", "llm.tasks={description: rewrite, "
                 "au_to_fe_reasoning: reason, au_recognition: rewrite, fe_recognition: rewrite}", *extra])


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("FEA_TEST_KEY", KEY)


def test_llm_build_then_cached_rebuild(tmp_path, key, capfd, caplog) -> None:
    cache = tmp_path / "cache"
    with FakeOpenAI() as server:
        # Every third request hallucinates an AU the face does not show.
        server.behaviour = lambda body, n: (
            Reply(content="The face clearly shows AU9 (nose wrinkler) and AU20 (lip stretcher).") if n % 3 == 0
            else Reply())
        assert build(tmp_path / "a", server, cache) == 0
        first = len(server.requests)
        assert build(tmp_path / "b", server, cache) == 0
        assert len(server.requests) == first  # the second build is served from the cache
    a, b = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert a == b and a
    assert {r["grounding_verdict"] for r in a} == {"grounded"}
    by_status = {s: [r for r in a if r["llm_status"] == s] for s in ("ok", "hallucinated")}
    assert by_status["ok"] and by_status["hallucinated"]
    assert all(r["text_source"] == "llm" for r in by_status["ok"])
    assert all(r["text_source"] == "template" and "AU" in r["llm_detail"] for r in by_status["hallucinated"])
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    llm = manifest["llm"]
    assert llm["rows_by_llm_status"]["hallucinated"] == len(by_status["hallucinated"])
    assert 0 < llm["hallucination_rate"] < 1
    html = write_report(tmp_path / "a").read_text()
    assert f"hallucination rate <b>{llm['hallucination_rate']:.1%}</b>" in html
    # The key went to the server, and nowhere else: not in outputs, cache, logs or console.
    written = [f for d in (tmp_path / "a", tmp_path / "b", cache) for f in d.rglob("*") if f.is_file()]
    assert written
    for f in written:
        assert KEY.encode() not in f.read_bytes(), f
    console = capfd.readouterr()
    assert KEY not in console.out + console.err + caplog.text


def test_endpoint_failing_mid_run_falls_back_or_stops_cleanly(tmp_path, key) -> None:
    cache = tmp_path / "cache"
    with FakeOpenAI() as server:
        server.behaviour = lambda body, n: Reply() if n <= 4 else Reply(500)
        assert build(tmp_path / "fallback", server, cache) == 0
        fallback = rows(tmp_path / "fallback")
        assert {r["llm_status"] for r in fallback} >= {"ok", "failed"}
        assert all(r["text_source"] == "template" for r in fallback if r["llm_status"] == "failed")

        assert build(tmp_path / "stopped", server, cache, "--set", "llm.on_error=stop") == 1
        assert not (tmp_path / "stopped").exists()  # nothing published
        cached = len(list(cache.rglob("*.json")))
        assert cached >= 4  # what was received before the failures is kept

        server.behaviour = lambda body, n: Reply()  # the endpoint recovers: the re-run finishes
        before = len(server.requests)
        assert build(tmp_path / "stopped", server, cache, "--set", "llm.on_error=stop") == 0
        resumed = rows(tmp_path / "stopped")
        assert {r["llm_status"] for r in resumed} == {"ok"}
        assert len(server.requests) - before == len(list(cache.rglob("*.json"))) - cached


def test_missing_api_key_is_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("FEA_TEST_KEY", raising=False)
    with FakeOpenAI() as server:
        assert build(tmp_path / "x", server, tmp_path / "cache") == 2
        assert server.requests == []
    assert "FEA_TEST_KEY" in capsys.readouterr().err
