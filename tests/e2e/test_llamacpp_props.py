"""llama.cpp's /props read by the real scraper from a loopback server (its slots, read once; odd answers never
fail the scrape; other engines never asked). The pages are tests/data's, captured by bench/real."""

from __future__ import annotations

import json
import pathlib

import pytest

from controller.config.schema import MetricsConfig, PoolConfig
from controller.engines.scrape import PROPS_TTL, Scraper, target_for
from controller.model import Member, PoolRef
from tests.helpers_http import Loopback, page

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def _pool(**metrics) -> PoolConfig:
    return PoolConfig(ref=PoolRef("llm"), engine_type="llamacpp", metrics=MetricsConfig(**metrics))


def _member(port: int) -> Member:
    return Member(name=f"127.0.0.1:{port}", partition="Common", address="127.0.0.1", port=port)


def real(name: str) -> str:
    return (DATA / f"llamacpp_real_{name}.txt").read_text()


def test_the_scraper_reads_slots_from_props_once():
    props = json.dumps({"total_slots": 4, "model_path": "m.gguf"})
    with Loopback({"/metrics": page(real("busy")), "/props": page(props, ctype="application/json")}) as srv, \
            Scraper(max_workers=2) as scraper:
        t = target_for(_member(srv.port), _pool(), None)
        for _ in range(3):
            (result,) = scraper.scrape([t], 2.0).values()
            assert result.ok and result.sample.slots == 4
        paths = [s["path"] for s in srv.seen]
    assert paths.count("/props") == 1 and paths.count("/metrics") == 3
    assert PROPS_TTL >= 60


@pytest.mark.parametrize("props", [None, "not json", json.dumps({"total_slots": "4"}), json.dumps([1])])
def test_a_missing_or_odd_props_never_fails_the_scrape(props):
    routes = {"/metrics": page(real("busy"))}
    if props is not None:
        routes["/props"] = page(props, ctype="application/json")
    with Loopback(routes) as srv, Scraper(max_workers=2) as scraper:
        (result,) = scraper.scrape([target_for(_member(srv.port), _pool(), None)], 2.0).values()
    assert result.ok and result.sample.slots is None and result.sample.running == 4


def test_other_engines_never_ask_for_props():
    with Loopback({"/metrics": page(real("busy"))}) as srv, Scraper(max_workers=2) as scraper:
        pool = PoolConfig(ref=PoolRef("llm"), engine_type="vllm", metrics=MetricsConfig())
        scraper.scrape([target_for(_member(srv.port), pool, None)], 2.0)
        assert [s["path"] for s in srv.seen] == ["/metrics"]
