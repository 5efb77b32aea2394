"""Security (issue #6, part 5): TLS verification by default, the configured CA path beats
REQUESTS_CA_BUNDLE, least privilege, no secret in any output, the systemd unit's exposure.
(Secrets in the CLI's own output: tests/e2e/test_e2e_cli.py; the fuzzing: bench/fuzz.py.)"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import pathlib
import re
import shutil
import subprocess

import certifi
import pytest
import structlog

from controller import logs
from controller.clock import FakeClock
from controller.config.schema import F5Config, MetricsConfig, TelemetryConfig
from controller.errors import AuthError, BigIPUnreachable
from controller.loop import render
from controller.ltm.client import BigIPClient
from controller.sim.bigip import BigIPEmulator
from controller.telemetry import Telemetry
from tests.fault_rig import PASSWORD, USER

REPO = pathlib.Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "f5-llm-ratio.service"
MAX_EXPOSURE = 2.0
API_KEY = "sec-ApiKey-Qv83mZ"
METRIC_PASSWORD = "sec-metric-Pw-77Lk"


@pytest.fixture
def emulator():
    with BigIPEmulator(users={USER: PASSWORD}) as emu:
        emu.add_pool("/Common/llm", members=["10.0.0.1:8000"])
        yield emu


def _client(emu, verify, **kw) -> BigIPClient:
    return BigIPClient(F5Config("127.0.0.1", port=emu.port, username=USER, password=PASSWORD, verify_tls=verify,
                                timeout=2, **kw), sleep=lambda s: None)


# ------------------------------------------------------------------------------------------- TLS


def test_tls_verification_is_on_by_default(emulator, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert F5Config("bigip.example").verify_tls is True
    client = _client(emulator, F5Config("x").verify_tls)
    from controller.model import PoolRef

    with pytest.raises(BigIPUnreachable, match="TLS verification failed"):
        client.read_pool(PoolRef("llm"))
    assert emulator.logins == 0, "nothing, not even the password, may be sent over an unverified connection"


def test_a_configured_ca_path_is_honoured_even_with_requests_ca_bundle_set(emulator, monkeypatch):
    from controller.model import PoolRef

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # a bundle that does NOT hold the emulator's CA
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    ok = _client(emulator, emulator.cert_path)
    assert [m.name for m in ok.read_pool(PoolRef("llm")).members] == ["10.0.0.1:8000"]
    ok.close()
    with pytest.raises(BigIPUnreachable, match="TLS verification failed"):
        _client(emulator, True).read_pool(PoolRef("llm"))


# ------------------------------------------------------------------------------------------- least privilege


def test_guest_role_can_plan_but_a_write_says_manager_is_needed(rig_factory):
    """Least privilege: Guest on the partition is enough for `plan`/dry-run; writing needs Manager."""
    emu = BigIPEmulator(users={USER: PASSWORD}, roles={USER: "guest"})
    planning = rig_factory(emulator=emu, dry_run=True)
    report = planning.tick()
    assert report.ok and len(report.plans[0].writes) == 3 and emu.writes == []
    writer = planning.reconciler(instance="", log=planning.log)
    writer.dry_run = False
    report = planning.tick(writer)
    assert report.applied == 0 and report.failed == 3
    assert all("needs the Manager role" in e for e in report.errors)
    writer.bigip.close()
    writer.scraper.close()


# ------------------------------------------------------------------------------------------- secrets


def test_no_secret_in_logs_errors_dry_run_or_status_through_every_fault(rig_factory):
    """Run the controller through login, 401s, 5xx, a BIG-IP that echoes the password, token limits,
    engine failures with credentials configured, a dry run and /status; then search everything it
    produced for the password, the metrics credentials and every token BIG-IP handed out."""
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("DEBUG", (PASSWORD, API_KEY, METRIC_PASSWORD), stream=buf, json=True)
    try:
        rig = rig_factory()
        rig.cfg = dataclasses.replace(rig.cfg, pools=tuple(
            dataclasses.replace(p, metrics=MetricsConfig(timeout=0.5, api_key=API_KEY, user="metrics",
                                                         password=METRIC_PASSWORD)) for p in rig.cfg.pools))
        rig.rec.bigip.close()
        rig.rec = rig.reconciler(log=logs.get())
        logs.REDACTOR.sources[:] = [rig.rec.bigip.tokens.secrets]
        tel = Telemetry(TelemetryConfig(enabled=False), clock=FakeClock(), tick_seconds=1.0)
        reports = []

        def tick():
            report = rig.tick()
            reports.append(report)
            tel.observe(report)

        tick()
        emu = rig.emu
        echo = {"code": 500, "message": f'bad request body {{"username":"admin","password":"{PASSWORD}"}}'}
        for kind in ("expired", "missing", "mcpd", "html503", (500, echo), (401, echo), "drop"):
            emu.fail_next(3, kind, path=r"/ltm/pool/")
            rig.clock.advance(rig.pool_fetch)
            tick()
        emu.fail_next(2, (500, echo), path=r"/authn/login")
        emu.restart()
        rig.clock.advance(rig.pool_fetch)
        tick()
        rig.servers[0].fault = "http500"
        rig.servers[1].fault = "html200"
        tick()
        emu.token_limit = 0
        emu.restart()
        rig.clock.advance(rig.pool_fetch)
        tick()
        emu.token_limit = 100

        dry = rig.reconciler(log=logs.get())
        dry.dry_run = True
        rig.clock.advance(rig.pool_fetch)
        reports.append(rig.tick(dry))
        dry.bigip.close()
        dry.scraper.close()

        bad = dataclasses.replace(rig.cfg.f5, password="wrong-" + PASSWORD[::-1])
        with pytest.raises(AuthError) as refused:
            BigIPClient(bad, sleep=lambda s: None).read_pool(rig.refs[0])

        outputs = {
            "logs": buf.getvalue(),
            "errors": "\n".join(e for r in reports for e in r.errors) + str(refused.value),
            "dry-run": "\n".join(render.plan_table(r) for r in reports),
            "status": json.dumps(tel.status()),
            "reprs": repr(rig.cfg) + repr(rig.rec.bigip) + repr(rig.rec.bigip.tokens),
        }
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()
        logs.REDACTOR.update(())
        logs.REDACTOR.sources[:] = []

    assert "bigip_read_failed" in outputs["logs"] and "bad request body" in outputs["errors"]
    tokens = {r.path.rsplit("/", 1)[-1] for r in emu.request_log if r.path.startswith("/mgmt/shared/authz/tokens/")}
    tokens |= set(emu._tokens)
    assert len(tokens) >= 3
    for name, text in outputs.items():
        for secret in (PASSWORD, API_KEY, METRIC_PASSWORD, *tokens):
            assert secret not in text, f"a secret ({secret[:4]}...) appeared in {name}"


# ------------------------------------------------------------------------------------------- systemd


def test_systemd_unit_exposure_is_at_most_2():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed: cannot score the unit's exposure")
    p = subprocess.run([tool, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
    if found is None:
        pytest.skip(f"systemd-analyze gave no exposure level here (exit {p.returncode}): {p.stderr.strip()[:200]}")
    assert float(found.group(1)) <= MAX_EXPOSURE, p.stdout[-2000:]


def test_systemd_unit_uses_notify_watchdog_and_credentials():
    unit = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "LoadCredential=f5-password:", "NoNewPrivileges=yes",
                 "DynamicUser=yes", "ProtectSystem=strict"):
        assert line in unit
    assert not re.search(r"^Environment=.*(PASSWORD|APIKEY|API_KEY)", unit, re.M | re.I), "no secret in the unit"
