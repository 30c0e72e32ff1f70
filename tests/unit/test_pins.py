"""The pins that must agree: the execution environment builds with the controller's versions, and
requirements.yml (for users with Galaxy) names the collection versions the pinned `ansible` package
carries (what CI and `make setup` use without Galaxy)."""

from __future__ import annotations

import json
import pathlib

import ansible_collections
import yaml

from conftest import REPO


def _requirements_txt() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.split("[", 1)[0]] = version
    return pins


def test_execution_environment_uses_the_controller_pins():
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text(encoding="utf-8"))
    pins = _requirements_txt()
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert deps["galaxy"] == "requirements.yml" and (REPO / deps["galaxy"]).is_file()
    for requirement in deps["python"]:
        name, version = requirement.split("==", 1)
        assert pins[name] == version, requirement


def test_requirements_yml_matches_the_collections_in_the_ansible_package():
    root = pathlib.Path(ansible_collections.__path__[0])
    wanted = yaml.safe_load((REPO / "requirements.yml").read_text(encoding="utf-8"))["collections"]
    for collection in wanted:
        namespace, name = collection["name"].split(".")
        manifest = json.loads((root / namespace / name / "MANIFEST.json").read_text(encoding="utf-8"))
        assert manifest["collection_info"]["version"] == collection["version"], collection["name"]
