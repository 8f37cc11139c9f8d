# The drover GitHub Action image: the package and its locked runtime dependencies (uv.lock), no dev tools.
#
# Build arguments (docs/container.md):
# - BASE: a Debian-based image with python3 (>= 3.11) and pip, e.g. a local one built with mmdebstrap when no
#   registry is reachable (tests/container/images.py does that).
# - EXTRA_CA_CERTS: PEM text of extra CA certificates to trust, for builds and runs behind a TLS-intercepting
#   proxy: --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)". Public certificates
#   only: the value is visible in the image history.
ARG BASE=python:3.12-slim

FROM ${BASE} AS base
ARG EXTRA_CA_CERTS=""
# every installer (pip, uv) and Python's ssl read this bundle; uv would otherwise trust only its built-in roots
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/drover-extra-ca.crt \
        && update-ca-certificates > /dev/null; \
    fi

FROM base AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# dependencies first: this layer is reused until uv.lock changes
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project --python python3
COPY README.md ./
COPY drover ./drover
RUN uv sync --frozen --no-dev --no-editable --python python3
# botocore ships the API model of every AWS service (28 MB); drover calls lambda, s3, sts and cloudwatch (a
# rollout's alarms), and botocore's credential providers may call sso, sso-oidc and signin.
# tests/test_action_container.py checks this list against the services the code names.
ARG BOTOCORE_SERVICES="lambda s3 sts cloudwatch sso sso-oidc signin"
RUN set -eu; \
    for path in /opt/venv/lib/python3*/site-packages/botocore/data/*/; do \
        name="$(basename "$path")"; \
        case " $BOTOCORE_SERVICES " in *" $name "*) ;; *) rm -r "$path" ;; esac; \
    done; \
    rm -r /opt/venv/lib/python3*/site-packages/boto3/data  # boto3's resource models: drover uses clients only
# pip only runs as the fallback installer (uv installs): its bytecode (6.5 MB) is left out, so the app layer stays
# under 80 MB; when pip does run, Python compiles it in memory (PYTHONDONTWRITEBYTECODE)
RUN find /opt/venv/lib/python3*/site-packages/pip -name __pycache__ -type d -prune -exec rm -r {} +

FROM base
LABEL org.opencontainers.image.title="drover-action" \
      org.opencontainers.image.description="Deploy a Python package to AWS Lambda (function + requirements layer)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
COPY entrypoint.py /app/entrypoint.py
# absolute paths: the runner sets the working directory to /github/workspace
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]
