# The drover GitHub Action image: the package and its locked runtime dependencies (uv.lock), no dev tools.
# BASE can be swapped for a local image (e.g. one built with mmdebstrap for an offline podman build).
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
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

FROM ${BASE}
LABEL org.opencontainers.image.title="drover-action" \
      org.opencontainers.image.description="Deploy a Python package to AWS Lambda (function + requirements layer)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
COPY entrypoint.py /app/entrypoint.py
# absolute paths: the runner sets the working directory to /github/workspace
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]
