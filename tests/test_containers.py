"""The Dockerfile and compose.yaml, checked without a Docker engine: hadolint finds nothing, the image
runs a console script this project installs as a non-root user, its health check asks a route the
app serves, and compose starts two API nodes only once PostgreSQL is healthy and migrated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from api.cli import command_function, parser
from api.commands.data import cmd_migrate
from api.commands.serve import cmd_serve
from tests.support.postgres import Server

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).with_name("hadolint")
API_NODES = ("api-1", "api-2")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def instructions(dockerfile: DockerfileParser, name: str, stage: int = -1) -> list[str]:
    """The values of every ``name`` instruction of one build stage (the last: the image)."""
    stages: list[list[dict[str, Any]]] = []
    for item in dockerfile.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        elif stages:  # comments come before the first FROM
            stages[-1].append(item)
    return [item["value"] for item in stages[stage] if item["instruction"] == name]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    linted = subprocess.run(
        [str(HADOLINT), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_the_image_is_a_pinned_python_311_slim(dockerfile: DockerfileParser) -> None:
    for base in dockerfile.parent_images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", base), base


def test_the_image_installs_the_project_without_its_test_extra(dockerfile: DockerfileParser) -> None:
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert "pip install --no-cache-dir /wheels/*.whl" in runs
    assert "[test]" not in runs and "-e " not in runs
    built = " ".join(instructions(dockerfile, "RUN", stage=0))
    assert "pip wheel" in built and "--no-deps" in built


def test_the_image_runs_serve_as_a_non_root_user_on_port_8000(dockerfile: DockerfileParser) -> None:
    (user,) = instructions(dockerfile, "USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert instructions(dockerfile, "EXPOSE") == ["8000"]
    command = json.loads(dockerfile.cmd)
    assert command == ["coupon-ledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts and scripts[command[0]] == "api.cli:main"
    args = parser().parse_args(command[1:])
    assert (command_function(args.func), args.host, args.port) == (cmd_serve, "0.0.0.0", 8000)


@pytest.mark.slow
def test_the_health_check_passes_against_a_running_server_and_fails_once_it_stops(
    dockerfile: DockerfileParser, database_url: str, tmp_path: Path
) -> None:
    (healthcheck,) = instructions(dockerfile, "HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and "urllib.request" in argv[2]  # slim has no curl
    assert "http://127.0.0.1:8000/healthz" in argv[2]
    server = Server(database_url, tmp_path, "health")
    # The image's check, word for word, but on this server's port (8000 may be taken here).
    check = [sys.executable, "-c", argv[2].replace(":8000/", f":{server.port}/")]
    try:
        server.wait_healthy()
        healthy = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.terminate()
    assert healthy.returncode == 0, healthy.stderr
    down = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode != 0


def test_the_build_context_holds_only_what_the_image_is_built_from(dockerfile: DockerfileParser) -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out (.git, .coupon-ledger, venvs, backups), then what is needed back in
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for value in instructions(dockerfile, "COPY", stage=0):
        copied.update(value.split()[:-1])
    assert copied == allowed
    assert (ROOT / "api" / "schema.sql").resolve() == (ROOT / "schema.sql").resolve()  # the wheel's copy


def test_compose_runs_postgres_18_with_a_volume_and_a_health_check(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:18"
    volume = postgres["volumes"][0].split(":")
    assert volume == ["pgdata", "/var/lib/postgresql"] and "pgdata" in compose["volumes"]
    check = postgres["healthcheck"]
    assert "pg_isready" in " ".join(check["test"])
    assert {"interval", "timeout", "retries"} <= set(check)


def test_compose_migrates_once_then_starts_two_api_nodes_of_the_same_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", *API_NODES}
    migrate = services["migrate"]
    assert command_function(parser().parse_args(migrate["command"][1:]).func) is cmd_migrate
    assert migrate["command"][0] == "coupon-ledger"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    database = services["postgres"]["environment"]
    ports = set()
    for name in API_NODES:
        node = services[name]
        assert node["image"] == migrate["image"] and node["build"] == migrate["build"] == "."
        assert "command" not in node  # the image's CMD: coupon-ledger serve
        assert node["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
        (mapping,) = node["ports"]
        host, container = mapping.split(":")
        assert container == "8000"
        ports.add(host)
        for service in (node, migrate):
            url = urlsplit(service["environment"]["DATABASE_URL"])
            assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/" + database["POSTGRES_DB"])
            assert url.username == database["POSTGRES_USER"]
            assert url.password == "${POSTGRES_PASSWORD:-coupon-ledger}" == database["POSTGRES_PASSWORD"]
    assert len(ports) == len(API_NODES)
