"""The sideband scheduler's own config files (tests/sideband_configs/) and what each is expected to load as,
shared by the unit tests of loading them and the end-to-end `check`/`plan` runs against the emulator."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "sideband_configs"
ENV = {"F5_PASSWORD": "f5-Pa55w0rd-xyzzy"}  # METRIC_PWD unset: the shipped files send their APIkey (Bearer)

# file: ([(pool, mode, pool_fallback, running threshold, waiting threshold)], unsupported pools, warnings)
SHIPPED = {
    "scheduler-config.yaml": (
        [("/Common/example_pool1", "s1_enhanced", False, 100.0, 100.0), ("/Common/example_pool2", "s1_enhanced", True, None, None)],
        [], 0),
    "scheduler-config.yaml.explanation.yaml": (
        [("/Common/example_pool1", "s1", False, None, None), ("/Common/example_pool2", "s1", False, None, None)], [], 1),
    "scheduler-config_xinfer_example.yaml": (
        [("/Common/example_pool2", "s1_enhanced", True, None, None)], ["/Common/example_pool1"], 1),
    "k8s-deployment-configmap.yaml": ([("/Common/example_pool1", "s1_enhanced", False, None, None)], [], 0),
    "readme-example-1.yaml": ([("/Common/llm-pool-1", "s1_enhanced", False, 20.0, 15.0)], [], 0),
    "readme-example-2.yaml": (
        [("/Common/llm-pool-1", "s2", False, 25.0, 20.0), ("/tenant-1/llm-pool-2", "s2", False, 30.0, None)], [], 0),
    "readme-zh-example-1.yaml": ([("/Common/llm-pool-1", "s1", False, 20.0, 15.0)], [], 0),
    "readme-zh-example-2.yaml": (
        [("/Common/llm-pool-1", "s2", False, 25.0, 20.0), ("/tenant-1/llm-pool-2", "s2", False, 30.0, None)], [], 0),
}
