# xrayfactory CPU image: the package on a CPU torch build. Runs every rule (GPU rules fall back
# to the CPU when `device: auto`). Build from the repository root: envs/build-images.sh cpu
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg

WORKDIR /opt/xrayfactory
COPY pyproject.toml README.md ./
COPY workflow/xrayfactory workflow/xrayfactory
# torch first and pinned, from PyTorch's CPU index: an unpinned torch pulls a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install . \
    && python -m xrayfactory --help > /dev/null

LABEL org.opencontainers.image.title="xrayfactory-cpu" \
      org.opencontainers.image.version="0.1.0"
