"""The command line's parser: every option documented with its default; retailer names checked
before anything touches a database."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from api.cli import COMMAND_MODULES, command_function, parser


def all_parsers(root: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield root.prog, root
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_every_command_has_help_and_every_option_a_description_and_its_default() -> None:
    seen = set()
    for prog, command in all_parsers(parser()):
        seen.add(prog)
        text = command.format_help()
        assert command.description, prog
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(
                action, (argparse._HelpAction, argparse._SubParsersAction)
            ):
                continue
            assert action.help, f"{prog} {action.dest} has no description"
            if action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()), (
                    f"{prog} {action.dest}: no default shown"
                )
    assert {
        "coupon-ledger serve",
        "coupon-ledger migrate",
        "coupon-ledger retailer create",
        "coupon-ledger verify",
    } <= seen


def test_serve_help_names_its_options_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--host HOST",
        "(default: 127.0.0.1)",
        "(default: 8000)",
        "--workers",
        "(default: 1)",
        "--access-log",
        "--graceful-timeout SECONDS",
        "(default: 10.0)",
        "SIGTERM",
    ):
        assert expected in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("   \t ", "must not be empty"),
        ("bad\x00name", "control characters"),
        ("line\nbreak", "control characters"),
        ("x" * 201, "at most 200"),
    ],
    ids=["empty", "whitespace", "nul", "newline", "too-long"],
)
def test_a_bad_retailer_name_is_refused_with_exit_2_and_a_clear_message(
    name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["retailer", "create", name])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "coupon-ledger retailer create: error: argument name:" in error
    assert message in error


def test_a_retailer_name_is_trimmed_and_may_be_200_characters() -> None:
    assert parser().parse_args(["retailer", "create", "  Corner Shop "]).name == "Corner Shop"
    assert parser().parse_args(["retailer", "create", "y" * 200]).name == "y" * 200


def test_every_command_names_a_function_of_its_module_and_every_function_is_a_command() -> None:
    named = {
        command.get_default("func") for _, command in all_parsers(parser()) if command.get_default("func") is not None
    }
    assert named == set(COMMAND_MODULES)
    for name in named:
        function = command_function(name)
        assert callable(function) and function.__name__ == name and function.__module__ == COMMAND_MODULES[name]


def modules_loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(done.stdout.split())


def test_the_command_line_imports_no_command_and_no_http_framework_until_one_is_run() -> None:
    # `retailer create` in a script or a health check should not pay for loading the HTTP app.
    loaded = modules_loaded_by("import api.cli")
    assert not {
        m
        for m in loaded
        if m.split(".")[0] in ("fastapi", "starlette", "uvicorn", "httpx")
        or m.startswith(("api.commands.", "projections"))
    }
    retailer = modules_loaded_by("import api.cli; api.cli.command_function('cmd_retailer_create')")
    assert not {m for m in retailer if m.split(".")[0] in ("fastapi", "starlette")}
