"""A tiny traffic scenario and a writer for scenario files, shared by the unit and end-to-end tests of bench/."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "duration_s": 60,
    "tick_ms": 1000,
    "arrivals": {"kind": "poisson", "load": 0.8, "seed": 1, "trace": "sample"},
    "members": [
        {"name": "slow", "prefill_speed": 1.0, "decode_speed": 1.0, "kv_tokens": 100_000},
        {"name": "fast", "prefill_speed": 3.0, "decode_speed": 1.7, "kv_tokens": 100_000},
    ],
}


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p
