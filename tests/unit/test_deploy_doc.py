"""docs/deploy.md's systemd units and Kubernetes manifests hold together.

Neither runs here (no systemd as init, no cluster), so this checks what can be checked
offline: ``systemd-analyze verify`` on the units (with the install prefix pointed at this
interpreter's venv, whose ``pampero`` and ``smg`` it then finds), and the manifests parsed,
the InferencePool selecting the Deployment's Pods on the port their container listens on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def manifests() -> dict[str, dict[str, Any]]:
    (text,) = blocks("yaml")
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text)}


def test_the_inference_pool_selects_the_pampero_pods_on_their_port():
    kinds = manifests()
    assert set(kinds) == {"Deployment", "InferencePool", "HTTPRoute"}
    pod = kinds["Deployment"]["spec"]["template"]
    pool = kinds["InferencePool"]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = [p["containerPort"] for p in container["ports"]]
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == ports
    command = container["command"]
    assert command[:2] == ["pampero", "serve"]
    assert command[command.index("--port") + 1] == str(ports[0])
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": ports[0]}
    (backend,) = kinds["HTTPRoute"]["spec"]["rules"][0]["backendRefs"]
    assert (backend["kind"], backend["name"]) == ("InferencePool", pool["metadata"]["name"])


def test_the_node_command_parses_as_pampero_serve():
    from pampero.cli import build_parser

    command = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    args = build_parser().parse_args(command[1:])
    assert args.port == 8000 and args.host == "0.0.0.0"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify(tmp_path):
    venv_bin = Path(sys.executable).parent
    for name in ("pampero", "smg"):
        if not (venv_bin / name).exists():
            pytest.skip(f"{name} is not installed beside {sys.executable}")
    names = []
    for text in blocks("ini"):
        name = text.splitlines()[0].removeprefix("# /etc/systemd/system/")
        unit = text.replace("/opt/pampero/.venv/bin/", f"{venv_bin}/")
        (tmp_path / name).write_text(unit.replace("User=pampero", "User=root"))
        names.append(name)
    assert names == ["pampero@.service", "smg.service"]
    (tmp_path / "pampero@8001.service").write_text((tmp_path / "pampero@.service").read_text())
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "pampero@8001.service", "smg.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
