"""The live page in a real headless browser (Debian's chromium through chromedriver, driven by selenium).

It loads http://<telemetry>/, waits for the charts, checks there is one card of charts per member with a
drawn ratio line, then moves a member's ratio through telemetry (as a tick would) and waits for the page to
show it, with the change and its reason listed. A screenshot of the page is saved (path printed; set
F5LR_SCREENSHOT_DIR to keep it). Skipped with the reason when selenium, chromium or chromedriver is missing:
`apt-get install -y chromium chromium-driver` and `pip install selenium` (the `browser` extra) enable it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from controller.clock import FakeClock
from controller.config.schema import TelemetryConfig
from controller.model import Action, Kind, Member, MemberPlan, Outcome, PoolPlan, PoolRef, PoolState, Reason, Sample, TickReport
from controller.telemetry import Telemetry

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install '.[browser]')")
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1000")
REF = PoolRef("llm-pool-1")
MEMBERS = 4

pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="no headless browser: apt-get install -y chromium chromium-driver")


def tick(ratios: list[tuple[int, int]], reason: str = "") -> TickReport:
    plans, outcomes = [], [Outcome(kind=Kind.POOL, reason=Reason.READ, pool=REF.full_path)]
    for i, (now, planned) in enumerate(ratios, start=1):
        m = Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, now)
        write = planned != now
        plans.append(MemberPlan(member=m, sample=Sample(float(i), running=3.0 * i, kv_usage=0.2 * i), score=planned / 100,
                                ratio=planned, connection_limit=0, action=Action.WRITE if write else Action.HOLD,
                                reason=reason if write else "target ratio"))
        if write:
            outcomes.append(Outcome(kind=Kind.MEMBER, reason=Reason.APPLIED, pool=REF.full_path, member=m.key))
    pool = PoolPlan(PoolState(REF, "ratio-least-connections-member", tuple(p.member for p in plans)), tuple(plans))
    return TickReport(started=0.0, finished=0.1, plans=(pool,), outcomes=tuple(outcomes))


@pytest.fixture
def telemetry():
    clock = FakeClock()
    t = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=1.0, engine_types={REF.full_path: "vllm"})
    t.poll_interval = 0.05
    t.start()
    for _ in range(3):
        t.observe(tick([(50, 50)] * MEMBERS))
        clock.advance(1.0)
    yield t, clock
    t.stop()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # fresh profile every run
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=DRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a skip, not a failure
        pytest.skip(f"chromium did not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


# The page redraws on every refresh, so it is read in one script call: element handles would go stale.
READ_PAGE = """
const cards = [...document.querySelectorAll('.member')].map(card => ({
  member: card.dataset.member, ratio: card.dataset.ratio, text: card.textContent,
  charts: [...card.querySelectorAll('svg.chart')].map(svg => svg.dataset.chart),
  ratioPath: (card.querySelector('svg.chart path[data-field="ratio"]') || {getAttribute: () => ''}).getAttribute('d'),
  ratioWidth: (card.querySelector('svg.chart path[data-field="ratio"]') || {getBoundingClientRect: () => ({width: 0})})
              .getBoundingClientRect().width,
  changeMarks: card.querySelectorAll('svg.chart line.change').length,
}));
const changes = [...document.querySelectorAll('#changes tbody tr')].map(tr => tr.textContent);
return {cards, changes, refreshes: Number(document.body.dataset.refreshes || 0)};
"""


def test_page_draws_a_chart_per_member_and_follows_ratio_changes(telemetry, browser, tmp_path):
    t, clock = telemetry
    host, port = t.address
    browser.get(f"http://{host}:{port}/")
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)
    page = wait.until(lambda d: (p := d.execute_script(READ_PAGE)) and len(p["cards"]) == MEMBERS and p)

    for card in page["cards"]:
        assert set(card["charts"]) >= {"ratio", "share", "load", "KV"}
        assert card["ratioPath"].count("L") >= 2  # three ticks: a drawn line, not a dot
        assert card["ratioWidth"] > 100  # laid out, visible
    assert page["cards"][0]["ratio"] == "50"

    # a tick moves member 1 from 50 to 90: the page must show it without a reload
    t.observe(tick([(50, 90)] + [(50, 50)] * (MEMBERS - 1), reason="target ratio 90 (queue emptied)"))
    clock.advance(1.0)
    t.observe(tick([(90, 90)] + [(50, 50)] * (MEMBERS - 1)))

    def moved(d):
        p = d.execute_script(READ_PAGE)
        first = next(c for c in p["cards"] if c["member"] == "10.0.0.1:8000")
        return p if first["ratio"] == "90" and p["changes"] else None

    after = wait.until(moved)
    assert after["refreshes"] > page["refreshes"]
    assert len(after["changes"]) == 1 and "50 → 90" in after["changes"][0] and "queue emptied" in after["changes"][0]
    first = next(c for c in after["cards"] if c["member"] == "10.0.0.1:8000")
    assert first["changeMarks"] >= 1  # the change is marked on its charts
    assert "queue emptied" in first["text"]

    shots = Path(os.environ.get("F5LR_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "live-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe  # no script error, no failed request


READ_PROBLEMS = """
return {
  alerts: [...document.querySelectorAll('#alerts li')].map(li => ({kind: li.className, text: li.textContent})),
  hidden: document.getElementById('alerts').hidden,
  cards: [...document.querySelectorAll('.member')].map(card => ({
    member: card.dataset.member, title: card.querySelector('h3 span').textContent, text: card.textContent,
    loadMax: (card.querySelector('svg.chart[data-chart="load"]') || {dataset: {}}).dataset.max,
    axes: [...card.querySelectorAll('svg.chart text.axis')].map(t => t.textContent)})),
  meta: document.getElementById('meta').textContent,
  window: document.getElementById('window').textContent,
  refreshes: Number(document.body.dataset.refreshes || 0),
};
"""


def test_page_banner_shows_unread_blind_and_paused_pools_and_members_without_metrics(browser):
    """Issue 24 item 4: what is wrong is on the page: a pool BIG-IP could not read (404), a paused pool, a
    member whose scrape failed (with its error); members named as BIG-IP shows them, axes in UTC with units,
    one y-scale per chart row across a pool's members."""
    clock = FakeClock()
    missing, paused = PoolRef("llm-missing"), PoolRef("llm-paused")
    t = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=1.0,
                  engine_types={REF.full_path: "vllm", missing.full_path: "vllm", paused.full_path: "vllm"})
    t.poll_interval = 0.05
    t.start()
    try:
        named = Member("gpu-node-1:8000", "Common", "10.0.0.1", 8000, 50)
        down = Member("10.0.0.2:8000", "Common", "10.0.0.2", 8000, 50)
        busy = Member("10.0.0.3:8000", "Common", "10.0.0.3", 8000, 50)
        plans = (MemberPlan(member=named, sample=Sample(2.0, running=4.0, kv_usage=0.3), score=1.0, ratio=50,
                            connection_limit=0, action=Action.HOLD),
                 MemberPlan(member=down, sample=None, score=None, ratio=50, connection_limit=0, action=Action.UNKNOWN_HOLD,
                            reason="timeout: read timed out after 3s; holding ratio (2s without metrics)",
                            scrape_error="timeout"),
                 MemberPlan(member=busy, sample=Sample(30.0, running=10.0, kv_usage=0.9), score=0.2, ratio=50,
                            connection_limit=0, action=Action.HOLD))
        good = PoolPlan(PoolState(REF, "ratio-least-connections-member", (named, down, busy)), plans)
        held = Member("10.0.1.1:8000", "Common", "10.0.1.1", 8000, 70)
        paused_plan = PoolPlan(PoolState(paused, "ratio-least-connections-member", (held,),
                                         description="f5-llm-ratio: pause"),
                               (MemberPlan(member=held, sample=Sample(1.0, running=1.0, kv_usage=0.1), score=1.0, ratio=70,
                                           connection_limit=0, action=Action.PAUSED, reason="pool paused"),))
        outcomes = (Outcome(kind=Kind.POOL, reason=Reason.READ, pool=REF.full_path),
                    Outcome(kind=Kind.POOL, reason=Reason.READ_FAILED, pool=missing.full_path,
                            detail="HTTP 404: Object not found - /Common/llm-missing"),
                    Outcome(kind=Kind.POOL, reason=Reason.PAUSED, pool=paused.full_path, detail="paused"))
        for _ in range(3):
            t.observe(TickReport(started=0.0, finished=0.1, plans=(good, paused_plan), outcomes=outcomes))
            clock.advance(1.0)
        host, port = t.address
        browser.get(f"http://{host}:{port}/")
        wait = WebDriverWait(browser, 20, poll_frequency=0.1)
        page = wait.until(lambda d: (p := d.execute_script(READ_PROBLEMS)) and p["refreshes"] and p["cards"] and p)
        assert not page["hidden"]
        texts = " | ".join(a["text"] for a in page["alerts"])
        assert "/Common/llm-missing could not be read" in texts and "404" in texts
        assert "/Common/llm-paused is paused" in texts
        assert "10.0.0.2:8000 (timeout)" in texts
        cards = {c["member"]: c for c in page["cards"]}
        assert cards["gpu-node-1:8000"]["title"].startswith("gpu-node-1:8000 (10.0.0.1)")
        assert "no metrics: timeout" in cards["10.0.0.2:8000"]["text"]
        assert cards["gpu-node-1:8000"]["loadMax"] == cards["10.0.0.3:8000"]["loadMax"]  # one scale per row
        assert any(a.endswith("UTC") for a in cards["gpu-node-1:8000"]["axes"])
        assert any(a.endswith(" req") for a in cards["gpu-node-1:8000"]["axes"])
        assert "UTC" in page["meta"] and "AM" not in page["meta"] and "PM" not in page["meta"]
        assert page["window"].startswith("the last ") and "hour" not in page["window"]
        severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, severe
    finally:
        t.stop()


def test_page_banner_against_the_emulator_one_missing_pool_and_a_broken_member(rig_factory, browser):
    """End to end: the real reconciler against the BIG-IP emulator and engine servers, one configured pool
    missing on BIG-IP (404) and one member serving garbage; the page names both."""
    from dataclasses import replace

    from controller.config.schema import PoolConfig
    from controller.loop.daemon import Daemon
    from controller.telemetry import attach

    rig = rig_factory()
    rig.cfg = replace(rig.cfg, pools=(*rig.cfg.pools, PoolConfig(PoolRef("gone"), "vllm")),
                      telemetry=TelemetryConfig(port=0))
    rig.rec.cfg = rig.cfg
    d = Daemon("/etc/f5-llm-ratio/rig.yaml", rig.cfg, builder=lambda cfg, dry_run: rig.rec)
    t = Telemetry(rig.cfg.telemetry, clock=rig.clock, tick_seconds=1.0)
    t.poll_interval = 0.05
    attach(t, d)
    t.start()
    try:
        rig.servers[1].fault = "garbage"
        for _ in range(3):
            rig.clock.advance(1)
            d.tick()
        host, port = t.address
        browser.get(f"http://{host}:{port}/")
        wait = WebDriverWait(browser, 20, poll_frequency=0.1)
        page = wait.until(lambda b: (p := b.execute_script(READ_PROBLEMS)) and p["refreshes"] and p["alerts"] and p)
        texts = " | ".join(a["text"] for a in page["alerts"])
        assert "/Common/gone could not be read" in texts
        assert f"{rig.members[1]} (not-prometheus)" in texts
        broken = next(c for c in page["cards"] if c["member"] == rig.members[1])
        assert "no metrics: not-prometheus" in broken["text"]
        assert t.health()[0] == 200 and t.readiness()[0] == 503
        if os.environ.get("F5LR_SCREENSHOT_DIR"):
            browser.save_screenshot(str(Path(os.environ["F5LR_SCREENSHOT_DIR"]) / "live-page-banner.png"))
    finally:
        t.stop()
