import pathlib
import re

from setuptools import find_namespace_packages, setup

HERE = pathlib.Path(__file__).resolve().parent
# The one place the version is written is controller/__init__.py; read it without importing the package
# (its dependencies are not installed yet when this runs).
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "controller" / "__init__.py").read_text(encoding="utf-8"), re.M)[1]

setup(
    name="f5-llm-ratio",
    version=VERSION,
    description="Drive F5 BIG-IP pool member ratios from LLM inference engine load, with no request path.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    # Namespace discovery so controller/sim/data (the built-in trace sample) ships as package data.
    packages=find_namespace_packages(include=["controller", "controller.*"], exclude=["*.__pycache__"]),
    package_data={"controller.sim.data": ["*.csv", "*.md"], "controller.telemetry": ["static/*"]},
    include_package_data=True,
    install_requires=[
        "requests>=2.28",
        "APScheduler>=3.10,<4",
        "PyYAML>=6.0",
        "structlog>=23.1",
        "prometheus_client>=0.17",
        "cryptography>=41",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "requests-mock>=1.11",
            "hypothesis>=6.80",
            # F5's own client, only as an independent check of the emulator; it needs distutils (<3.12).
            'f5-sdk>=3.0.21; python_version < "3.12"',
            # writes the random-weight models the real-engine test serves with llama.cpp (bench/real)
            "gguf>=0.10",
        ],
        "bench": ["matplotlib>=3.7"],
        # the live page's browser test (tests/e2e/test_live_page_browser.py); also needs chromium and chromedriver
        "browser": ["selenium>=4.10"],
        "lint": ["ruff>=0.5", "mypy>=1.5", "import-linter>=2.1", "types-PyYAML", "types-requests"],
    },
    entry_points={"console_scripts": ["f5-llm-ratio=controller.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
