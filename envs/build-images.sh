#!/usr/bin/env bash
# Build the job images and convert them for Apptainer (what `snakemake --sdm apptainer` runs):
#   bash envs/build-images.sh [cpu|cuda]...     (default: both)
# Needs docker (or podman: ENGINE=podman) and apptainer; writes
# containers/xrayfactory-<version>-<kind>.sif, the paths config key `containers` names by default.
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${ENGINE:-docker}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(cpu cuda)
mkdir -p containers
for kind in "${kinds[@]}"; do
    tag="xrayfactory:${version}-${kind}"
    out="containers/xrayfactory-${version}-${kind}"
    "$engine" build -f "envs/${kind}.Dockerfile" -t "$tag" .
    "$engine" save "$tag" -o "${out}.tar"
    apptainer build --force "${out}.sif" "docker-archive://${out}.tar"
    rm "${out}.tar"
done
