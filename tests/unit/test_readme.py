"""README's two set-up commands are the ones CI runs."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_both():
    commands = setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci
    assert any("pytest" in c for c in commands) and any("posttrain run" in c for c in commands)


def test_the_default_test_command_runs_the_doctests():
    """README's `python -m pytest` collects src/posttrain with --doctest-modules (pyproject)."""
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "src/posttrain" in options["testpaths"] and "--doctest-modules" in options["addopts"]
    documented = [p for p in (REPO / "src" / "posttrain").rglob("*.py") if ">>> " in p.read_text()]
    assert len(documented) >= 5
