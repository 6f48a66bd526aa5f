"""The paths a pip install needs from this host: its pip configuration files and the files,
wheel folders and local indexes they (or PIP_* variables) name (a local index `.../simple` with
the folder above it, where its pages link the files). One path per line, for read-only mounts
into an image build (envs/build-images.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def pip_paths() -> list[str]:
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "debug"], capture_output=True, text=True
    ).stdout
    paths = set()
    for line in config.splitlines():
        words = line.strip().rstrip(",").replace("file://", " ").replace("'", " ").split()
        for word in words:
            word = word.rstrip(",:")
            if word.startswith("/") and Path(word).exists():
                paths.add(word)
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            paths |= {v for v in value.replace("file://", " ").split() if Path(v).exists()}
    paths = {str(Path(p).parent) if Path(p).name == "simple" else p for p in paths}
    return sorted(p for p in paths if p != "/")


if __name__ == "__main__":
    print("\n".join(pip_paths()))
