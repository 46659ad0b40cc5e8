"""The app as a package: migrations committed, typed, static files and templates shipped;
``./run build`` and a quiet editable install."""

import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

import django_stripe_bridge
from tests.live import ROOT

PACKAGE = Path(django_stripe_bridge.__file__).parent


@pytest.mark.django_db
def test_no_missing_migrations():
    out = StringIO()
    call_command("makemigrations", "django_stripe_bridge", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_typed_marker_and_client_are_in_the_package():
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "static" / "django_stripe_bridge" / "stripe-bridge.js").exists()


def test_the_stripe_range_is_the_one_tox_and_the_readme_test():
    """pyproject's ``stripe`` range starts at the version ``stripe-lowest`` pins, ends
    before the major after ``stripe-latest``'s, and is the one the README states."""
    import configparser
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(r"stripe\b", d)]
    low, high = re.fullmatch(r"stripe>=([\d.]+),<(\d+)", spec).groups()  # type: ignore[union-attr]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert f"stripe=={low}.0" in tox["testenv:stripe-lowest"]["deps"]
    assert f"<{high}" in tox["testenv:stripe-latest"]["deps"]
    readme = (ROOT / "README.md").read_text()
    assert f"(`{spec}`)" in readme and f"{low} to {int(high) - 1}.x" in readme


def test_every_command_has_help():
    from django.core.management import get_commands, load_command_class

    names = sorted(n for n, app in get_commands().items() if app == "django_stripe_bridge")
    assert names == [
        "stripe_bridge_prune",
        "stripe_bridge_rebuild",
        "stripe_bridge_republish",
        "stripe_bridge_sync",
        "stripe_bridge_thin",
        "stripe_bridge_webhook_setup",
    ]
    for name in names:
        command = load_command_class("django_stripe_bridge", name)
        assert command.help, name


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the checkout's tracked files, sharing its ``.venv``."""
    root = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = root / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (root / ".venv").symlink_to(ROOT / ".venv")
    return root


def test_run_build_makes_the_sdist_and_wheel_and_leaves_no_build_directory(checkout):
    result = subprocess.run(
        ["./run", "build"], cwd=checkout, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    version = django_stripe_bridge.__version__
    assert sorted(p.name for p in (checkout / "dist").iterdir()) == [
        f"django_stripe_bridge-{version}-py3-none-any.whl",
        f"django_stripe_bridge-{version}.tar.gz",
    ]
    assert not (checkout / "build").exists()


def test_an_editable_install_prints_no_build_backend_warning(checkout, tmp_path):
    """``./run demo``'s first ``pip install -e .`` in a new venv: nothing that reads as an
    error (setuptools' "Editable installation" BuildBackendWarning)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    # As ./run does: a current pip shows the build backend's warnings.
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True, timeout=300)
    result = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "-e", "."],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "BuildBackendWarning" not in output and "Editable installation" not in output, output
    location = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import django_stripe_bridge as m; print(m.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert location.startswith(str(checkout)), location
