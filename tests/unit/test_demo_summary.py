"""The demo's final summary, in process: unfinished requests counted, p50 and p99 compared with
least-connections (tests/slow/test_demo.py runs the demo itself)."""


def test_summary_counts_unfinished_requests_and_compares_p50_and_p99():
    import threading
    from types import SimpleNamespace

    from controller import demo

    def cluster(label, ttfts, offered):
        return SimpleNamespace(label=label, lock=threading.Lock(), offered=offered, all_ttfts=lambda: list(ttfts),
                               names={"h100:1": "h100"}, engines={"h100:1": None},
                               emulator=SimpleNamespace(member=lambda pool, m: {"ratio": 100}))

    text = demo.final_summary(cluster("controller", [0.1, 0.2, 3.0], 10), cluster("least-conn", [0.2, 0.2, 0.4], 4))
    assert "requests done     3 of    10 (open     7)" in text
    assert "TTFT <= 2 s: 20% of offered" in text
    assert "lower is better" in text
    assert "p50 TTFT: controller 200ms vs least-connections 200ms (1.00x, equal)" in text
    assert "p99 TTFT: controller 3000ms vs least-connections 400ms (7.50x, worse)" in text
    assert "controller 7 of 10, least-conn 1 of 4" in text
