"""The deployment files: app.json (Heroku's one-click deploy) and the Dockerfile agree with
the Procfile, the configuration and .python-version. Building the image needs a Docker
daemon and a registry, which the test machine does not have; the image's start command is
run here instead, on a Procfile of its own."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config import Config
from devtools.procfile import ROOT, procfile_commands

APP_JSON_KEYS = {
    "name", "description", "keywords", "website", "repository", "logo", "success_url",
    "scripts", "env", "formation", "addons", "buildpacks", "environments", "stack", "image",
}  # fmt: skip
ENV_KEYS = {"description", "value", "required", "generator"}
DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


class Recording(dict[str, str]):
    """An environment that notes every variable read from it."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def config_variables() -> set[str]:
    environ = Recording()
    Config.from_env(environ)
    return environ.read


def python_version() -> str:
    return (ROOT / ".python-version").read_text().strip()


@pytest.fixture(scope="module")
def app_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "app.json").read_text())
    return data


class TestAppJson:
    def test_uses_only_the_schema_keys(self, app_json: dict[str, Any]) -> None:
        assert set(app_json) <= APP_JSON_KEYS
        for name, variable in app_json["env"].items():
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
            assert set(variable) <= ENV_KEYS, name
            assert variable.get("generator", "secret") == "secret"
            assert variable["description"]

    def test_runs_every_procfile_process_on_the_python_buildpack(
        self, app_json: dict[str, Any]
    ) -> None:
        assert set(app_json["formation"]) == set(procfile_commands())
        assert all(p["quantity"] >= 1 for p in app_json["formation"].values())
        assert app_json["buildpacks"] == [{"url": "heroku/python"}]

    def test_provisions_heroku_redis(self, app_json: dict[str, Any]) -> None:
        plans = [a["plan"] if isinstance(a, dict) else a for a in app_json["addons"]]
        assert [p for p in plans if p.split(":")[0] == "heroku-redis"]

    def test_names_only_variables_the_service_reads(self, app_json: dict[str, Any]) -> None:
        assert set(app_json["env"]) <= config_variables()

    def test_asks_nothing_that_a_deploy_needs(self, app_json: dict[str, Any]) -> None:
        """One click: every variable is generated, has a value or is optional, and the web
        process's one requirement, an API key, is generated."""
        for variable in app_json["env"].values():
            assert "generator" in variable or "value" in variable or not variable["required"]
        assert app_json["env"]["API_KEYS"]["generator"] == "secret"
        assert app_json["env"]["ADMIN_API_KEYS"]["generator"] == "secret"

    def test_its_values_and_generated_secrets_are_a_valid_configuration(
        self, app_json: dict[str, Any]
    ) -> None:
        environ = {name: v["value"] for name, v in app_json["env"].items() if "value" in v}
        for name, variable in app_json["env"].items():
            if variable.get("generator") == "secret":
                environ[name] = secrets.token_hex(32)  # what Heroku generates: 64 hex digits
        environ["REDIS_URL"] = "rediss://:password@ec2-1-2-3-4.compute-1.amazonaws.com:6380"
        config = Config.from_env(environ)
        assert config.api_keys
        assert config.admin_api_keys
        assert config.redis_ssl_cert_reqs == "none"


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions: (keyword, the rest), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    parsed = [line.split(None, 1) for line in lines if line and line[0] != "#"]
    return [(keyword.upper(), rest) for keyword, rest in parsed]


class TestDockerfile:
    def test_parses(self, instructions: list[tuple[str, str]]) -> None:
        assert {keyword for keyword, _ in instructions} <= DOCKER_INSTRUCTIONS
        assert instructions[0][0] == "FROM"
        for keyword, rest in instructions:
            if keyword in ("ENTRYPOINT", "CMD"):
                assert isinstance(json.loads(rest), list)  # exec form, no shell of its own

    def test_runs_the_python_of_python_version(self, instructions: list[tuple[str, str]]) -> None:
        assert instructions[0] == ("FROM", f"python:{python_version()}-slim")

    def test_installs_the_lock_hash_checked(self, instructions: list[tuple[str, str]]) -> None:
        runs = [rest for keyword, rest in instructions if keyword == "RUN"]
        assert "pip install --require-hashes -r requirements.txt" in runs

    def test_starts_the_procfile_line_it_is_given(
        self, instructions: list[tuple[str, str]], tmp_path: Path
    ) -> None:
        entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
        assert json.loads(dict(instructions)["CMD"]) == ["web"]
        (tmp_path / "Procfile").write_text(
            'web: echo "web on ${PORT:-8000} with $LOG_FORMAT"\nworker: echo worker\n'
        )

        def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*entrypoint, *args], cwd=tmp_path, env=env, capture_output=True, text=True
            )

        assert run("web", PORT="5000", LOG_FORMAT="json").stdout == "web on 5000 with json\n"
        assert run("web", LOG_FORMAT="text").stdout == "web on 8000 with text\n"
        assert run("worker").stdout == "worker\n"
        refused = run("clock")
        assert refused.returncode == 2
        assert "no process named clock" in refused.stderr
