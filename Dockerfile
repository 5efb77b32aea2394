# f5-llm-ratio as a container: where the sideband scheduler ran (its k8s-deployment.yaml), this runs.
#
#   docker build -t f5-llm-ratio .
#   docker run --read-only --tmpfs /tmp -v $PWD/config.yaml:/etc/f5-llm-ratio/config.yaml:ro \
#       -v $PWD/secrets:/run/secrets/f5-llm-ratio:ro -p 9109:9109 f5-llm-ratio
#
# Runs as a non-root uid (65532) on a read-only root filesystem: nothing is written but the token state
# (STATE_DIRECTORY, a writable volume) and nothing else is needed. The config is mounted at
# /etc/f5-llm-ratio/config.yaml (a ConfigMap: a changed file is picked up within global.interval seconds);
# secrets are files under /run/secrets/f5-llm-ratio (a Secret): `f5-password` is found there without any
# config key (CREDENTIALS_DIRECTORY), others by name (password_file, APIkey_file, metric_pwd_file), or pass
# them as environment variables for password_env / metric_pwd_env, as the sideband's files do.
# Telemetry listens on 0.0.0.0:9109 (F5LR_TELEMETRY_HOST/PORT, unless the config's telemetry section sets
# them): /healthz (liveness), /readyz (readiness), /metrics, /pools/status and the sideband's /health.

FROM python:3.12-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml MANIFEST.in README.md CHANGELOG.md LICENSE ./
COPY controller ./controller
RUN pip install --no-cache-dir --no-compile --root-user-action=ignore --prefix=/install .

FROM python:3.12-slim
COPY --from=build /install /usr/local
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    F5LR_TELEMETRY_HOST=0.0.0.0 \
    F5LR_TELEMETRY_PORT=9109 \
    CREDENTIALS_DIRECTORY=/run/secrets/f5-llm-ratio \
    STATE_DIRECTORY=/var/lib/f5-llm-ratio
USER 65532:65532
EXPOSE 9109
ENTRYPOINT ["f5-llm-ratio"]
CMD ["run", "--config", "/etc/f5-llm-ratio/config.yaml"]
