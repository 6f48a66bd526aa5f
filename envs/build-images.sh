#!/usr/bin/env bash
# Build the job images that `snakemake --sdm apptainer` runs, from the repository root:
#   bash envs/build-images.sh [--debian-base] [cpu|cuda]...      (default: cpu cuda)
# Tags localhost/xrayfactory:<version>-<kind> with podman (or docker: ENGINE=docker); where
# apptainer is installed, also converts each to containers/xrayfactory-<version>-<kind>.sif, the
# paths that config key `containers` names by default.
# --debian-base: where no registry serves base images, first build a Debian bookworm base with
# mmdebstrap (localhost/xrayfactory-base:bookworm, Python 3.11) and build on it (build argument
# BASE). With podman the host's pip configuration, and the wheel folders and indexes it names,
# are mounted read-only into the build, so the images install from where the host installs.
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${ENGINE:-$(command -v podman > /dev/null && echo podman || echo docker)}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
base_args=()
if [ "${1:-}" = "--debian-base" ]; then
    shift
    base=localhost/xrayfactory-base:bookworm
    if ! "$engine" image inspect "$base" > /dev/null 2>&1; then
        rootfs=$(mktemp -d)/rootfs.tar
        mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs"
        "$engine" import "$rootfs" "$base"
        rm -r "$(dirname "$rootfs")"
    fi
    base_args=(--build-arg "BASE=$base")
fi
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(cpu cuda)

engine_args=()
build_args=()
if [ "$engine" = podman ]; then
    # measured on the development machines (../shared/ENVIRONMENT.md): crun fails there and
    # podman's default rlimits are refused
    engine_args=(--runtime runc)
    build_args=(--ulimit nofile=1024:20000 --ulimit nproc=4096:4096 --network host)
    while read -r path; do
        build_args+=(--volume "$path:$path:ro")
    done < <(python3 envs/pip_mounts.py)
fi
for kind in "${kinds[@]}"; do
    tag="localhost/xrayfactory:${version}-${kind}"
    start=$SECONDS
    "$engine" "${engine_args[@]}" build "${build_args[@]}" "${base_args[@]}" \
        -f "envs/${kind}.Dockerfile" -t "$tag" .
    echo "built $tag in $((SECONDS - start)) s"
    if command -v apptainer > /dev/null; then
        out="containers/xrayfactory-${version}-${kind}"
        mkdir -p containers
        "$engine" save "$tag" -o "${out}.tar"
        apptainer build --force "${out}.sif" "docker-archive://${out}.tar"
        rm "${out}.tar"
    fi
done
