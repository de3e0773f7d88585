"""The Procfile's commands, read from the file itself so that `make run`, the end-to-end tests
and the benchmarks start the service exactly the way a deployment does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"


def procfile_commands() -> dict[str, str]:
    processes = parse_procfile(PROCFILE.read_text()).processes
    return {name: str(command) for name, command in processes.items()}


def process_env(overrides: Mapping[str, str], bin_dir: Path | None = None) -> dict[str, str]:
    """The current environment plus `overrides`, with this venv's scripts (or `bin_dir`'s,
    another venv's) first on PATH."""
    env = dict(os.environ)
    env.update(overrides)
    if bin_dir is not None:
        # Only that venv: nothing of this one's may leak in through the environment.
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(name, None)
    scripts = bin_dir or Path(sys.executable).parent
    env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start(
    name: str, env: Mapping[str, str], *, bin_dir: Path | None = None, **popen: object
) -> subprocess.Popen[bytes]:
    """Start the Procfile's `name` line through a shell, as Heroku and honcho do, in this
    checkout, with this venv's or `bin_dir`'s scripts first on PATH."""
    command = procfile_commands()[name]
    process: subprocess.Popen[bytes] = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {command}"],
        cwd=ROOT,
        env=process_env(env, bin_dir),
        **popen,  # type: ignore[call-overload]
    )
    return process
