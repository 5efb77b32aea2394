"""The documented systemd install (docs/install.md, "Installing the systemd unit") run for real into a temporary root,
then the controller started as an unprivileged uid that is in no group of the files (as systemd's DynamicUser
is), with what the unit gives it: $CREDENTIALS_DIRECTORY (LoadCredential= lines of the unit), $STATE_DIRECTORY
and $WATCHDOG_USEC. Skipped (with the reason) when not root or setpriv is missing. The venv/pip line is
skipped (no network needed: the checkout's interpreter runs the code) and systemctl/journalctl need systemd
as PID 1, so they are skipped too."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.e2e_env import PASSWORD, REPO, Stack, cli_env

UID = 65534  # nobody; --clear-groups leaves it in no group at all
INSTALL_DOC = REPO / "docs" / "install.md"
UNIT = REPO / "systemd" / "f5-llm-ratio.service"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to install into a root-owned tree and switch uid"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed"),
]


def install_lines() -> list[str]:
    text = INSTALL_DOC.read_text()
    section = text[text.index("## Installing the systemd unit"):]
    block = section[section.index("```sh") + 5:]
    block = block[:block.index("```")]
    return [line for line in block.strip().splitlines()
            if not re.match(r"\s*(python3 -m venv|systemctl|journalctl)", line)]


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1].strip() for line in UNIT.read_text().splitlines() if line.startswith(key + "=")]


def as_nobody(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_documented_install_starts_as_an_unprivileged_uid_and_reads_config_and_credentials():
    root = pathlib.Path(tempfile.mkdtemp(prefix="f5lr-root-"))
    root.chmod(0o755)
    s = Stack([(0, 0, 0.1), (8, 4, 0.9)]).start()
    try:
        script = "set -e\n" + "\n".join(install_lines()).replace("'the-password'", "\"$F5LR_TEST_PASSWORD\"")
        subprocess.run(["bash", "-c", script], cwd=REPO, check=True, timeout=60,
                       env={**os.environ, "DESTDIR": str(root), "F5LR_TEST_PASSWORD": PASSWORD})
        etc = root / "etc" / "f5-llm-ratio"
        assert oct(etc.stat().st_mode & 0o777) == "0o755"
        assert (etc / "f5-password").stat().st_mode & 0o777 == 0o600
        assert (root / "etc/systemd/system/f5-llm-ratio.service").read_text() == UNIT.read_text()
        # "then edit it": point the installed config at the emulator (root edits in place; mode kept)
        ca = etc / "bigip-ca.pem"
        shutil.copy(s.bigip.cert_path, ca)
        ca.chmod(0o644)
        cfg = yaml.safe_load((etc / "config.yaml").read_text())
        cfg["f5"].update(host="127.0.0.1", port=s.bigip.port, username="admin", verify_tls=str(ca))
        cfg["pools"] = [{"name": "llm-pool-1", "engine_type": "vllm", "metrics": {"port": None}}]
        cfg.setdefault("telemetry", {})["enabled"] = False
        (etc / "config.yaml").write_text(yaml.safe_dump(cfg))
        assert (etc / "config.yaml").stat().st_mode & 0o777 == 0o644
        # what systemd does for the service: credentials copied readable by the service only, a private state dir
        creds = root / "run" / "credentials"
        creds.mkdir(parents=True)
        for spec in unit_values("LoadCredential"):
            name, source = spec.split(":", 1)
            target = creds / name
            shutil.copy(root / source.lstrip("/"), target)
            os.chown(target, UID, UID)
            target.chmod(0o400)
        os.chown(creds, UID, UID)
        creds.chmod(0o500)
        state = root / "var" / "lib" / unit_values("StateDirectory")[0]
        state.mkdir(parents=True)
        os.chown(state, UID, UID)
        state.chmod(0o700)
        watchdog = float(unit_values("WatchdogSec")[0])
        env = cli_env(F5_PASSWORD=None, METRIC_PWD=None, CREDENTIALS_DIRECTORY=str(creds),
                      STATE_DIRECTORY=str(state), WATCHDOG_USEC=str(int(watchdog * 1e6)), HOME="/nonexistent")
        # the uid cannot read the secret where it is installed ...
        denied = as_nobody("cat", str(etc / "f5-password"), env=env)
        if denied.returncode == 0:
            pytest.skip("this container lets an unprivileged uid read root's 0600 files (no DAC enforcement)")
        # ... but the controller reads its config and its credential, logs in and writes
        deps = as_nobody(sys.executable, "-c", "import apscheduler, requests, structlog, yaml", env=env)
        if deps.returncode != 0:  # e.g. an interpreter under /root (0700): the install would use its own venv
            pytest.skip(f"uid {UID} cannot import this interpreter's packages ({sys.executable}): "
                        "run the suite from a venv the unprivileged uid can read")
        r = as_nobody(sys.executable, "-m", "controller", "run", "--once", "--config", str(etc / "config.yaml"), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert PASSWORD not in r.stdout + r.stderr
        assert s.member_writes(), "nothing written"
        token_files = list(state.glob("tokens-*.json"))
        assert token_files and all(f.stat().st_mode & 0o777 == 0o600 and f.stat().st_uid == UID for f in token_files)
        # and a config error exits 2, which the unit does not restart
        assert "2" in unit_values("RestartPreventExitStatus")[0].split()
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_unit_exposure_is_at_most_2():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True,
                       timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert match, r.stdout + r.stderr
    assert float(match.group(1)) <= 2.0
