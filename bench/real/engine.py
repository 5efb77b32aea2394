"""The real engine: llama.cpp's `llama-server`, built once from the sources that the llama-cpp-python
source distribution on PyPI vendors, and started on loopback with a generated model.

Build (`ensure_server`): `pip download` the pinned sdist (the only network use, through pip and its
configured index), `cmake` its `vendor/llama.cpp` with `-DLLAMA_CURL=OFF` and a static build, and copy
`llama-server` into a cache outside the checkout (`$F5LR_CACHE`, else `$XDG_CACHE_HOME/f5-llm-ratio`,
else `~/.cache/f5-llm-ratio`). A second call reuses the binary. A lock file keeps two builds (a test
and `.ci/run`, say) from racing. About 9-10 minutes on two cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

import requests

#: the llama-cpp-python release whose vendored llama.cpp is built (its sdist is on PyPI)
LLAMA_CPP_PYTHON = "0.3.36"
BINARY = "llama-server"


def die_with_parent() -> None:
    """preexec_fn for the rig's children (Linux): SIGTERM them when the rig's process dies, so a killed
    benchmark leaves no engine, HAProxy or controller behind. Best effort elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class EngineUnavailable(RuntimeError):
    """The engine cannot be built or started here (no compiler, no cmake, no index, a failed build)."""


def cache_dir() -> pathlib.Path:
    if os.environ.get("F5LR_CACHE"):
        return pathlib.Path(os.environ["F5LR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "f5-llm-ratio"


def server_path(cache: pathlib.Path | None = None) -> pathlib.Path:
    return (cache or cache_dir()) / f"llama.cpp-{LLAMA_CPP_PYTHON}" / BINARY


@dataclasses.dataclass(frozen=True)
class Build:
    path: pathlib.Path
    seconds: float  # how long the build took (when it was built, else as recorded then)
    reused: bool


def ensure_server(*, build: bool = True, timeout: float = 1800.0, log=print) -> Build:
    """The cached `llama-server`, built first when absent (and `build`). Raises EngineUnavailable."""
    cache = cache_dir()
    path = server_path(cache)
    record = path.with_name("build.json")
    if path.exists():
        return Build(path, _recorded_seconds(record), reused=True)
    if not build:
        raise EngineUnavailable(f"{path} is not built (python -m bench.real build)")
    for tool in ("cmake", "c++", "make"):
        if shutil.which(tool) is None:
            raise EngineUnavailable(f"{tool} is not installed: cannot build llama-server")
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / "build.lock"):
        if path.exists():  # another process built it while we waited
            return Build(path, _recorded_seconds(record), reused=True)
        started = time.monotonic()
        source = _fetch_sources(cache, log)
        _compile(source, path, timeout - (time.monotonic() - started), log)
        seconds = time.monotonic() - started
        record.write_text(json.dumps({"llama_cpp_python": LLAMA_CPP_PYTHON, "build_seconds": round(seconds, 1)}))
        log(f"built {path} in {int(seconds // 60)} min {seconds % 60:.0f} s")
        return Build(path, seconds, reused=False)


def _recorded_seconds(record: pathlib.Path) -> float:
    try:
        return float(json.loads(record.read_text())["build_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


@contextlib.contextmanager
def _lock(path: pathlib.Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_sources(cache: pathlib.Path, log) -> pathlib.Path:
    """The llama.cpp tree vendored in the pinned sdist, downloaded through pip and unpacked once."""
    src = cache / "src"
    tree = src / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    src.mkdir(parents=True, exist_ok=True)
    sdist = src / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        log(f"fetching the llama-cpp-python {LLAMA_CPP_PYTHON} sdist through pip")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", str(src), f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not sdist.exists():
            raise EngineUnavailable(f"pip could not fetch llama-cpp-python=={LLAMA_CPP_PYTHON}: {done.stderr.strip()[-300:]}")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name or m.name.endswith("/vendor/llama.cpp")]
        tar.extractall(src, members=members, filter="data") if sys.version_info >= (3, 12) else tar.extractall(src, members=members)
    if not (tree / "CMakeLists.txt").exists():
        raise EngineUnavailable(f"the sdist has no vendor/llama.cpp tree ({tree})")
    return tree


def _compile(tree: pathlib.Path, dest: pathlib.Path, timeout: float, log) -> None:
    build = tree / "build"
    jobs = str(max(1, os.cpu_count() or 1))
    steps = [
        ["cmake", "-S", str(tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DBUILD_SHARED_LIBS=OFF"],
        ["cmake", "--build", str(build), "--target", BINARY, "-j", jobs],
    ]
    deadline = time.monotonic() + timeout
    logfile = dest.parent.parent / "build.log"
    for cmd in steps:
        log("$ " + " ".join(cmd))
        with open(logfile, "a") as out:
            try:
                done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as e:
                raise EngineUnavailable(f"the llama-server build ran out of time ({timeout:.0f} s); see {logfile}") from e
        if done.returncode != 0:
            raise EngineUnavailable(f"the llama-server build failed ({' '.join(cmd[:2])}); see {logfile}")
    built = build / "bin" / BINARY
    if not built.exists():
        raise EngineUnavailable(f"the build finished without {built}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.replace(dest)


# ------------------------------------------------------------------------------------------ a server


@dataclasses.dataclass
class EngineServer:
    """One `llama-server` on 127.0.0.1 serving `model` with `slots` parallel slots and `threads` threads."""

    name: str
    binary: pathlib.Path
    model: pathlib.Path
    port: int
    slots: int = 4
    threads: int = 1
    context_per_slot: int = 2048
    log_path: pathlib.Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 120.0) -> EngineServer:
        cmd = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
               "-np", str(self.slots), "-c", str(self.slots * self.context_per_slot), "-t", str(self.threads),
               "-tb", str(self.threads), "--metrics", "--no-webui", "--no-warmup", "-b", "512"]
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineUnavailable(f"llama-server {self.name} exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise EngineUnavailable(f"llama-server {self.name} was not ready in {ready_timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.proc, 10.0)

    def complete(self, prompt: list[int], n_predict: int, timeout: float = 120.0) -> dict:
        """One non-streamed completion straight to the engine (not through the data plane)."""
        body = {"prompt": prompt, "n_predict": n_predict, "ignore_eos": True, "cache_prompt": False, "temperature": 0.0}
        r = requests.post(self.url + "/completion", json=body, timeout=timeout)
        r.raise_for_status()
        return r.json()


@dataclasses.dataclass(frozen=True)
class Speed:
    prompt_tps: float
    gen_tps: float

    def request_rate(self, prompt: float, output: float) -> float:
        """Requests/s of `prompt` prompt and `output` generated tokens, one request at a time."""
        return 1.0 / (prompt / self.prompt_tps + output / self.gen_tps)


def measure(server: EngineServer, prompt_tokens: int = 256, output_tokens: int = 64, repeats: int = 3) -> Speed:
    """The engine's own single-request speed from llama.cpp's `timings` (medians over `repeats`):
    prompt tokens/s and generated tokens/s."""
    from bench.real.load import prompt_ids  # local: load imports nothing of ours back

    prompt, gen = [], []
    for i in range(repeats):
        t = server.complete(prompt_ids(prompt_tokens, seed=1000 + i), output_tokens)["timings"]
        prompt.append(float(t["prompt_per_second"]))
        gen.append(float(t["predicted_per_second"]))
    return Speed(sorted(prompt)[len(prompt) // 2], sorted(gen)[len(gen) // 2])
