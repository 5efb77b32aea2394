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
from controller.config import TelemetryConfig
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
