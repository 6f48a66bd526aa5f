#!/usr/bin/env python3
"""A stand-in for apptainer, for the containerised-study test only (linked as `apptainer` on its
PATH): `apptainer exec [options] IMAGE COMMAND...` runs COMMAND as a `podman run` of the podman
image that the file IMAGE names (one line "podman-image: <reference>", written by the test where
a .sif would be; a missing IMAGE fails as in apptainer), with what apptainer gives by default:
the working directory bound and current, the --home folder as $HOME, /tmp and /var/tmp bound,
the host's network, the caller's user, and the host environment except PATH and
LD_LIBRARY_PATH (the image's). Each call is appended as one JSON line to $APPTAINER_SHIM_LOG.
`apptainer --version` answers as apptainer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

POINTER = re.compile(r"^podman-image: (\S+)$", re.M)
NOT_PASSED = {"PATH", "LD_LIBRARY_PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_"}
PODMAN = ["podman", "--runtime", "runc", "run", "--rm", "--network", "host"]
ULIMITS = ["--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096"]
QUIET = ("--quiet", "--silent", "-q", "-s")


def fail(message: str) -> None:
    print(f"apptainer (test stand-in): {message}", file=sys.stderr)
    sys.exit(255)


def parse_exec(args: list[str]) -> tuple[dict, str, list[str]]:
    """(options, image, command) of `exec` arguments."""
    opts: dict = {"binds": [], "home": os.environ.get("HOME", "/root"), "pwd": os.getcwd()}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in QUIET:
            continue
        if flag in ("--nv", "--cleanenv"):
            opts[flag.lstrip("-")] = True
        elif flag in ("--bind", "-B") and args:
            opts["binds"] += args.pop(0).split(",")
        elif flag in ("--home", "--pwd") and args:
            opts[flag.lstrip("-")] = args.pop(0)
        else:
            fail(f"option {flag} is not supported")
    if len(args) < 2:
        fail("usage: apptainer exec [options] IMAGE COMMAND...")
    return opts, args[0], args[1:]


def podman_image(image: str) -> str:
    """The podman image reference that the file `image` names."""
    if not os.path.isfile(image):
        fail(f"could not open image {os.path.abspath(image)}: no such file")
    with open(image) as f:
        m = POINTER.search(f.read(1000))
    if not m:
        fail(f"{image}: not a podman-image pointer")
    return m[1]


def podman_command(opts: dict, image: str, command: list[str]) -> list[str]:
    cwd = os.getcwd()
    mounts = [f"{cwd}:{cwd}", f"{opts['home']}:{opts['home']}", "/tmp:/tmp", "/var/tmp:/var/tmp"]
    for bind in opts["binds"]:
        src, _, rest = bind.partition(":")
        mounts.append(f"{src}:{rest or src}")
    env = {} if opts.get("cleanenv") else os.environ.copy()
    env = {k: v for k, v in env.items() if k not in NOT_PASSED}
    prefix = "APPTAINERENV_"
    env |= {k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)}
    env["HOME"] = opts["home"]
    cmd = [*PODMAN, *ULIMITS, "--user", f"{os.getuid()}:{os.getgid()}", "-w", opts["pwd"]]
    for mount in dict.fromkeys(mounts):
        cmd += ["-v", mount]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    return [*cmd, image, *command]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print("apptainer version 1.3.6")  # parsed by Snakemake: the version last
        return 0
    while argv and argv[0] in QUIET:
        argv = argv[1:]
    if argv[:1] != ["exec"]:
        fail(f"only `exec` and `--version` are supported, not {argv[:1]}")
    opts, image, command = parse_exec(argv[1:])
    reference = podman_image(image)
    log = os.environ.get("APPTAINER_SHIM_LOG")
    if log:
        entry = {"image": image, "podman_image": reference, "command": command}
        with open(log, "a") as f:
            f.write(json.dumps({**entry, "pwd": opts["pwd"], "binds": opts["binds"]}) + "\n")
    return subprocess.run(podman_command(opts, reference, command)).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
