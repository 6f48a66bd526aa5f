# xrayfactory CUDA image: GPU rules (DeepDRR rendering, detector and diffusion training and
# sampling). A -devel base: DeepDRR compiles its CUDA kernels with nvcc at run time and renders
# through an EGL context. Build from the repository root: bash envs/build-images.sh cuda
# BASE: the CUDA base by default; any Debian-like base with python3.11 in its apt sources
# checks every install step and import without CUDA (bash envs/build-images.sh --debian-base cuda).
ARG BASE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    PYOPENGL_PLATFORM=egl \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    PATH=/opt/venv/bin:$PATH

# python3.11 for the package; EGL/GL and libusb for DeepDRR's renderer and open3d; glib for
# OpenCV (deepdrr imports cv2).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv libegl1 libgl1 libglvnd0 libgomp1 libusb-1.0-0 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv

WORKDIR /opt/xrayfactory
COPY pyproject.toml README.md ./
COPY workflow/xrayfactory workflow/xrayfactory
COPY workflow/schemas workflow/schemas
# torch pinned in the same command as the `gpu` extra: deepdrr alone would upgrade it. The
# checks: torch is still the pinned release, and deepdrr imports (no GPU needed for that).
RUN pip install "torch==2.13.0" ".[gpu]" \
    && python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__" \
    && python -c "import deepdrr" \
    && python -m xrayfactory --help > /dev/null

LABEL org.opencontainers.image.title="xrayfactory-cuda" \
      org.opencontainers.image.version="0.1.0"
