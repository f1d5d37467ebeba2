"""The end-of-session log scan (tests/conftest.py) finds what it is meant to find."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.e2e import harness


def test_the_scan_finds_keys_bearer_tokens_and_base64(tmp_path: Path, monkeypatch) -> None:
    clean = tmp_path / "clean.log"
    clean.write_text(
        "DEBUG pampero.access: POST /v1/chat/completions -> 401, 120 bytes in\n"
        "missing or invalid API key: send 'Authorization: Bearer <key>'\n"
        "model sha256 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32\n"
    )
    payload = base64.b64encode(bytes(range(256)) * 2).decode()
    dirty = tmp_path / "dirty.log"
    dirty.write_text(
        f"a key: sk-secret-1234\nAuthorization: Bearer sk-other-98765\nbody: {payload}\n"
    )
    monkeypatch.setattr(harness, "SERVER_LOGS", [(clean, ("sk-secret-1234",))])
    assert harness.secrets_in_logs() == []
    monkeypatch.setattr(harness, "SERVER_LOGS", [(dirty, ("sk-secret-1234",))])
    found = harness.secrets_in_logs()
    assert [line.split(":")[1] for line in found] == ["1", "2", "3"], found
