"""bench.points: a variant's constants hold for its own job only (a worker process runs many jobs)."""

from __future__ import annotations

from bench import points
from controller.policy import scoring


class _Result:
    def __init__(self, seen: float) -> None:
        self.seen = seen

    def summary(self) -> dict[str, float]:
        return {"burst_queue": self.seen}


def test_a_variant_holds_during_its_job_and_is_put_back_after(monkeypatch):
    monkeypatch.setattr(points, "run", lambda sc, con: _Result(scoring.BURST_QUEUE))
    before = scoring.BURST_QUEUE
    varied = ("homo4", "poisson", "conv", 0.5, False, (("policy", "BURST_QUEUE", 0.0),), 1, "default")
    plain = ("homo4", "poisson", "conv", 0.5, False, (), 1, "default")
    assert points._job(varied)[1] == {"burst_queue": 0.0}
    assert scoring.BURST_QUEUE == before
    assert points._job(plain)[1] == {"burst_queue": before}  # the next job in the worker sees the default


def test_variants_parse_to_module_constants_and_refuse_unknown_names():
    assert points.parse_variant("policy.BURST_QUEUE=0,capacity.TTFT_DECAY_S=10") == (
        ("policy", "BURST_QUEUE", 0), ("capacity", "TTFT_DECAY_S", 10))
    try:
        points.parse_variant("policy.NO_SUCH=1")
    except SystemExit as e:
        assert "module.NAME=value" in str(e)
    else:
        raise AssertionError("an unknown constant was accepted")
