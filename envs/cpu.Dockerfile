# xrayfactory CPU image: the package on a CPU torch build. Runs every rule (GPU rules fall back
# to the CPU when `device: auto`). Build from the repository root: bash envs/build-images.sh cpu
# BASE: any Debian-like image with python3.11 and its venv module (default: the public one; the
# build script can make one with mmdebstrap where no registry is reachable).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/xrayfactory
COPY pyproject.toml README.md ./
COPY workflow/xrayfactory workflow/xrayfactory
COPY workflow/schemas workflow/schemas
# torch first and pinned, from PyTorch's CPU index: an unpinned torch pulls a CUDA build.
RUN python3 -m venv /opt/venv \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install . \
    && python -m xrayfactory --help > /dev/null

LABEL org.opencontainers.image.title="xrayfactory-cpu" \
      org.opencontainers.image.version="0.1.0"
