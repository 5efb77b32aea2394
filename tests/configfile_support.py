"""Helpers and fixtures shared by test_configfile and test_configfile_sections."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from controller.config.yamlfile import parse
from controller.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SEED_YAML = ROOT / "config" / "sideband-seed.yaml"
EXAMPLE_YAML = ROOT / "config" / "example.yaml"
SEED_TEXT = ("seeds", "000_425239b3fa2bf6d7.txt")  # under ../shared

F5_SECRET = "f5-Pa55w0rd-xyzzy"
METRIC_SECRET = "metric-Pa55-plugh"
ENV = {"F5_PASSWORD": F5_SECRET, "METRIC_PWD": METRIC_SECRET}


def minimal() -> dict:
    return {
        "f5": {"host": "192.0.2.10", "password_env": "F5_PASSWORD"},
        "pools": [{"name": "llm-pool-1", "engine_type": "vllm"}],
    }


def setting(data: dict, dotted: str, value) -> dict:
    """Set `a.b[0].c` in a copy of `data`, creating mappings on the way."""
    out = copy.deepcopy(data)
    node = out
    parts = dotted.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        key = int(part) if part.isdigit() else part
        if not isinstance(node, list) and key not in node:
            node[key] = {}
        node = node[key]
    last = parts[-1]
    node[int(last) if last.isdigit() else last] = value
    return out


def problems(data: dict, environ=ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, environ)
    return info.value.problems
