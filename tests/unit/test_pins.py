"""The pins that must agree: the execution environment builds with the controller's versions,
requirements.yml (for users with Galaxy) names the collection versions the pinned `ansible` package
carries (what CI and `make setup` use without Galaxy), and the collection tsh.infra (galaxy.yml,
meta/runtime.yml) asks for those versions at least."""

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


def _requirements_yml() -> dict[str, str]:
    wanted = yaml.safe_load((REPO / "requirements.yml").read_text(encoding="utf-8"))["collections"]
    return {collection["name"]: collection["version"] for collection in wanted}


def test_requirements_yml_matches_the_collections_in_the_ansible_package():
    # ansible_collections spans the `ansible` package's directory and this checkout's collections/
    # (tests/conftest.py): the pinned collections are in the first that has them.
    roots = [pathlib.Path(path) for path in ansible_collections.__path__]
    for full_name, version in _requirements_yml().items():
        namespace, name = full_name.split(".")
        manifests = [root / namespace / name / "MANIFEST.json" for root in roots]
        manifest = next((m for m in manifests if m.is_file()), None)
        assert manifest, f"{full_name} in none of {roots}"
        assert json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]["version"] == version, full_name


def test_the_collection_asks_for_the_pinned_versions_at_least():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
    pins = _requirements_yml()
    for name, spec in galaxy["dependencies"].items():
        assert name in pins, f"galaxy.yml depends on {name}, which requirements.yml does not pin"
        assert f">={pins[name]}" in spec.split(","), f"{name}: {spec} does not start at the pin {pins[name]}"
    runtime = yaml.safe_load((REPO / "meta/runtime.yml").read_text(encoding="utf-8"))
    major_minor = ".".join(_requirements_txt()["ansible-core"].split(".")[:2])
    assert runtime["requires_ansible"] == f">={major_minor}.0"
