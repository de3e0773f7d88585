"""The lock, requirements.txt, agrees with pyproject's runtime dependencies.

Heroku's buildpack and the Dockerfile install requirements.txt alone (pip, hash-checked);
`make lock` writes it from pyproject's [project] dependencies. The two agree when:

- every line of the lock pins one version (`name==version`, maybe with an environment
  marker) and carries at least one `--hash`;
- every requirement of [project] dependencies has at least one pinned line, and each of its
  pinned lines (one per marker, where the resolution differs by platform or Python) is a
  version the requirement allows;
- every package the lock holds as a direct dependency (`# via mailhooks (pyproject.toml)`,
  as uv writes it) is still one of [project] dependencies.

What this cannot see statically, that the lock also holds everything those packages and
their extras (`uvicorn[standard]`) need in turn, pip checks: with `--require-hashes` it
refuses any requirement the file does not pin, and tests/test_deploy_install.py installs
the lock into a fresh venv and runs the service from it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
PROJECT_VIA = "mailhooks (pyproject.toml)"
FIX = "run `make lock`"


@dataclass
class Pinned:
    name: str
    version: Version
    marker: str
    hashes: int
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> list[Pinned]:
    """The pinned lines of a pip requirements file as uv writes it, with their `# via`."""
    entries: list[Pinned] = []
    logical = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    for line in logical.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            via = stripped.lstrip("#").strip()
            if entries and via.startswith("via "):
                entries[-1].via.append(via.removeprefix("via ").strip())
            elif entries and via and via != "via" and line.startswith("    #   "):
                entries[-1].via.append(via)
            continue
        requirement, *options = stripped.split(" --")
        hashes = sum(1 for option in options if option.startswith("hash=sha256:"))
        parsed = Requirement(requirement)
        specifiers = list(parsed.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{requirement!r} is not pinned to one version: {FIX}")
        entries.append(
            Pinned(
                name=canonicalize_name(parsed.name),
                version=Version(specifiers[0].version),
                marker=str(parsed.marker or ""),
                hashes=hashes,
            )
        )
    return entries


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def lock_problems(requirements: list[Requirement], pinned: list[Pinned]) -> list[str]:
    problems = [f"{p.name}=={p.version} has no --hash: {FIX}" for p in pinned if not p.hashes]
    by_name: dict[str, list[Pinned]] = {}
    for entry in pinned:
        by_name.setdefault(entry.name, []).append(entry)
    wanted = {canonicalize_name(r.name): r for r in requirements}
    for name, requirement in wanted.items():
        lines = by_name.get(name)
        if not lines:
            problems.append(f"{requirement} is not in {LOCK.name}: {FIX}")
        for entry in lines or ():
            if not requirement.specifier.contains(entry.version, prereleases=True):
                problems.append(
                    f"{LOCK.name} pins {entry.name}=={entry.version}, outside {requirement}: {FIX}"
                )
    for entry in pinned:
        if PROJECT_VIA in entry.via and entry.name not in wanted:
            problems.append(
                f"{LOCK.name} pins {entry.name} for the project, which no longer depends on it: "
                f"{FIX}"
            )
    return problems


class TestTheLock:
    def test_agrees_with_pyproject(self) -> None:
        assert lock_problems(runtime_requirements(), parse_lock(LOCK.read_text())) == []

    def test_says_how_it_was_made(self) -> None:
        assert "#    make lock\n" in LOCK.read_text()

    def test_python_version_is_one_pyproject_allows(self) -> None:
        # Heroku's buildpack reads .python-version (major.minor: the latest patch release).
        version = (ROOT / ".python-version").read_text().strip()
        assert re.fullmatch(r"3\.\d+", version)
        requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
        assert SpecifierSet(requires).contains(f"{version}.0")


class TestLockProblems:
    """The check itself, on small made-up locks."""

    LOCK_TEXT = (
        "# This file was autogenerated by uv via the following command:\n"
        "#    make lock\n"
        "httpx==0.28.1 \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "    # via\n"
        "    #   httpx-aiohttp\n"
        "    #   mailhooks (pyproject.toml)\n"
        "idna==3.10 \\\n"
        "    --hash=sha256:cc\n"
        "    # via httpx\n"
        "uvloop==0.21.0 ; sys_platform != 'win32' \\\n"
        "    --hash=sha256:dd\n"
        "    # via mailhooks (pyproject.toml)\n"
    )

    def pinned(self) -> list[Pinned]:
        return parse_lock(self.LOCK_TEXT)

    def test_parses_pins_markers_hashes_and_via(self) -> None:
        httpx, idna, uvloop = self.pinned()
        assert (httpx.name, httpx.version, httpx.hashes) == ("httpx", Version("0.28.1"), 2)
        assert httpx.via == ["httpx-aiohttp", PROJECT_VIA]
        assert idna.via == ["httpx"]
        assert uvloop.marker == 'sys_platform != "win32"'
        assert uvloop.via == [PROJECT_VIA]

    def test_agreement(self) -> None:
        wanted = [Requirement("httpx>=0.28,<0.29"), Requirement("uvloop>=0.19")]
        assert lock_problems(wanted, self.pinned()) == []

    def test_a_requirement_missing_from_the_lock(self) -> None:
        wanted = [
            Requirement("httpx>=0.28"),
            Requirement("uvloop"),
            Requirement("prometheus-client"),
        ]
        assert lock_problems(wanted, self.pinned()) == [
            "prometheus-client is not in requirements.txt: run `make lock`"
        ]

    def test_a_pin_outside_the_range(self) -> None:
        wanted = [Requirement("httpx>=0.29"), Requirement("uvloop")]
        assert lock_problems(wanted, self.pinned()) == [
            "requirements.txt pins httpx==0.28.1, outside httpx>=0.29: run `make lock`"
        ]

    def test_a_direct_dependency_pyproject_dropped(self) -> None:
        # idna is only pulled in by httpx: not the project's to declare.
        assert lock_problems([Requirement("httpx")], self.pinned()) == [
            "requirements.txt pins uvloop for the project, which no longer depends on it: "
            "run `make lock`"
        ]

    def test_a_line_without_hash(self) -> None:
        pinned = parse_lock("idna==3.10\n    # via mailhooks (pyproject.toml)\n")
        assert lock_problems([Requirement("idna")], pinned) == [
            "idna==3.10 has no --hash: run `make lock`"
        ]

    def test_a_line_not_pinned(self) -> None:
        with pytest.raises(ValueError, match="not pinned to one version"):
            parse_lock("idna>=3 \\\n    --hash=sha256:cc\n")
