"""requirements.txt alone runs the portal: `make run` on a fresh clone installs nothing else.

A child process hides every installed distribution that requirements.txt does not bring (neither
pinned there nor declared as needed by a pinned one), as a fresh virtualenv would lack them, then
imports every module under ``portal/`` and builds the app (which mounts the RQ dashboard, whose
imports are not all declared by its own package). A hard import of a hidden package fails there;
an optional one falls back as it would on a fresh machine.
"""
import json
import os
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_IMPORT_EVERYTHING_WITHOUT = r"""
import importlib, json, pkgutil, sys
from importlib import metadata

allowed = set(json.loads(sys.argv[1]))
canonical = lambda name: name.replace("_", "-").replace(".", "-").lower()
hidden = {top for top, owners in metadata.packages_distributions().items()
          if not any(canonical(owner) in allowed for owner in owners)}

class HideUninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideUninstalled())
import portal
for info in pkgutil.walk_packages(portal.__path__, "portal."):
    importlib.import_module(info.name)
import app  # create_app(): blueprints, the RQ dashboard, metrics
print("imported", len(sys.modules))
"""


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(path):
    """The requirements a file pins, as (name, extras)."""
    pinned = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                requirement = Requirement(line)
                pinned.append((requirement.name, tuple(requirement.extras)))
    return pinned


def _closure(pinned):
    """The pinned distributions and everything they declare they need (extras they name included)."""
    seen, todo = set(), list(pinned)
    while todo:
        name, extras = todo.pop()
        key = _canonical(name)
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.requires(name) or ():
            need = Requirement(text)
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in ("",) + extras):
                todo.append((need.name, tuple(need.extras)))
    return seen


def test_every_package_the_running_portal_imports_comes_from_requirements_txt(tmp_path):
    allowed = sorted(_closure(_pinned(os.path.join(ROOT, "requirements.txt"))))
    env = dict(os.environ, PORTAL_INSTANCE_PATH=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", _IMPORT_EVERYTHING_WITHOUT, json.dumps(allowed)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("imported")


def test_the_check_sees_a_package_only_the_tests_bring(tmp_path):
    """The child really hides what it is told to: without pytest's closure, pytest is not there."""
    allowed = sorted(_closure(_pinned(os.path.join(ROOT, "requirements.txt"))))
    script = _IMPORT_EVERYTHING_WITHOUT.replace("import portal\n", "import pytest\nimport portal\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(allowed)], cwd=ROOT,
                          env=dict(os.environ, PORTAL_INSTANCE_PATH=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "No module named 'pytest'" in done.stderr
