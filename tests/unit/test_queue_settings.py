"""The pool's connection queue (queueOnConnectionLimit, queueDepthLimit, queueTimeLimit): read from
BIG-IP, said by `check`, and what it switches in the default (`drive: auto`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.config.schema import PoolConfig, WeightsConfig
from controller.loop import preflight
from controller.ltm import paths
from controller.ltm.paths import Malformed
from controller.model import PoolRef, PoolState
from controller.policy import weights
from tests.bigip_support import REF, pool_reply


@pytest.mark.parametrize(("fields", "queue", "depth", "wait"), [
    ({}, False, 0, 0),
    ({"queueOnConnectionLimit": "enabled", "queueDepthLimit": 500, "queueTimeLimit": 2000}, True, 500, 2000),
    ({"queueOnConnectionLimit": "disabled", "queueDepthLimit": 0, "queueTimeLimit": 0}, False, 0, 0),
])
def test_queue_settings_are_read(fields, queue, depth, wait):
    state = paths.parse_pool(REF, pool_reply(**fields))
    assert (state.queue_on_connection_limit, state.queue_depth_limit, state.queue_time_limit_ms) == (queue, depth, wait)


@pytest.mark.parametrize("bad", [{"queueTimeLimit": "2s"}, {"queueDepthLimit": -1}, {"queueTimeLimit": True}])
def test_a_bad_queue_setting_is_a_malformed_reply(bad):
    with pytest.raises(Malformed):
        paths.parse_pool(REF, pool_reply(**bad))


class _BigIP:
    def __init__(self, state: PoolState):
        self.state = state

    def read_pool(self, ref):
        return self.state


STATE = PoolState(PoolRef("llm"), "ratio-least-connections-member", ())


@pytest.mark.parametrize(("drive", "queue", "wait", "severity", "says"), [
    ("auto", False, 0, "ok", "tmsh modify ltm pool /Common/llm queue-on-connection-limit enabled"),
    ("auto", True, 0, "ok", "connection limits follow each engine's queue in pools of up to 8 members (this one: 0); "
                            "no queueDepthLimit; no queueTimeLimit"),
    ("auto", True, 1000, "ok", "queueTimeLimit 1000 ms (a request queued longer is reset)"),
    ("ratio", True, 0, "ok", "no connection limits (drive: ratio)"),
    ("both", False, 0, "warn", "reject excess requests; fix: tmsh modify ltm pool /Common/llm queue-on-connection-limit"),
])
def test_check_says_what_the_queue_settings_mean_and_what_to_set(drive, queue, wait, severity, says):
    state = replace(STATE, queue_on_connection_limit=queue, queue_time_limit_ms=wait)
    row, _ = preflight.check_pool(_BigIP(state), PoolConfig(PoolRef("llm"), "vllm", weights=WeightsConfig(drive=drive)))
    assert row.status == severity and says in row.detail, row.detail


@pytest.mark.parametrize(("drive", "queue", "limits"), [
    ("auto", False, False), ("auto", True, True), ("ratio", True, False), ("connection_limit", False, True),
    ("both", True, True),
])
def test_limits_on(drive, queue, limits):
    assert WeightsConfig(drive=drive).limits_on(queue) is limits


@pytest.mark.parametrize(("drive", "members", "limits"), [
    ("auto", 4, True), ("auto", 8, True), ("auto", 9, False), ("auto", 16, False),
    ("both", 16, True), ("connection_limit", 16, True), ("ratio", 4, False),
])
def test_auto_limits_only_in_pools_of_up_to_8(drive, members, limits):
    assert weights.auto_limits(True, members, WeightsConfig(drive=drive)) is limits
