"""The architecture holds: the core is pure, imports run one way."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_io_library():
    code = (
        "import sys, pkgutil, importlib, agent.core\n"
        "for m in pkgutil.iter_modules(agent.core.__path__): importlib.import_module('agent.core.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('serial', 'gpiozero', 'paho', 'sqlite3', 'starlette', 'uvicorn', 'luma', 'socket', 'threading'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    # threading/socket may be pulled in by the standard library itself (e.g. by logging); I/O libraries never.
    offenders = [name for name in out.split(",") if name and name.split(".")[0] not in ("threading", "socket")]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("agent.core." + (node.module or "") if path.parent.name == "core" else "." + (node.module or ""))
            elif node.module:
                names.add(node.module)
    return names


def test_core_imports_nothing_else_of_agent():
    # The core reads the validated config dataclasses (pure data); nothing else from outside it.
    for path in (ROOT / "agent" / "core").glob("*.py"):
        for name in _imports(path):
            if name.startswith("agent"):
                assert name.startswith("agent.core") or name == "agent.config", f"{path.name} imports {name}"


def test_adapters_never_import_the_composition_root():
    for path in (ROOT / "agent" / "adapters").rglob("*.py"):
        assert not any(n in ("agent.runtime", "agent.cli") for n in _imports(path)), path


def test_agent_never_imports_hil():
    for path in (ROOT / "agent").rglob("*.py"):
        assert not any(n == "hil" or n.startswith("hil.") for n in _imports(path)), path


def test_signatures_are_verified_by_openssl_and_no_cryptography_is_home_made():
    # The running agent may load cryptography: its memory target is per real profile
    # (<= 64 MiB, flat over days), no longer a 40 MiB figure that pushed Ed25519 into
    # hand-written Python. Verification is OpenSSL's, the canonical form the rfc8785 package's.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.core import signing

    key = signing.parse_public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")  # RFC 8032 TEST 1
    assert isinstance(key, Ed25519PublicKey)
    assert not (ROOT / "agent" / "core" / "ed25519.py").exists()
    # Curve arithmetic would show its field prime or group order somewhere.
    markers = ("2**255", "2 ** 255", "2**252", "2 ** 252", "57896044618658097711785492504343953926634992332820282019728792003956564819949")
    for path in (ROOT / "agent").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not any(m in text for m in markers), f"{path} looks like hand-written curve arithmetic"
    # Nor a hand-written canonicaliser: the signed bytes come from rfc8785.
    assert "rfc8785" in _imports(ROOT / "agent" / "core" / "signing.py")
