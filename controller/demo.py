"""`f5-llm-ratio demo`: placeholder until the emulator lands."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run, then stop")


def run(args) -> int:
    print("f5-llm-ratio demo: not available yet")
    return 1
