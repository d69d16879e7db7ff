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


def test_the_agent_never_loads_the_cryptography_package_even_with_signing_on():
    # cryptography costs ~7 MiB of RAM; the unit only verifies (agent.core.ed25519).
    key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # RFC 8032 TEST 1
    signature = ("5VZDAMNgrHKQhuLMgG6CioSHfx645dl02HPgZSJJAVVfuIIVkKM7rMYeOXAc+bRr0lv18Flbv"
                 "iRlUUFDjnoQCw==")
    code = (
        "import base64, sys, agent.cli, agent.runtime\n"
        "agent.cli.build_parser()\n"
        "from agent.config import parse_config\n"
        "from agent.core import ed25519, signing\n"
        f"config = parse_config({{'unit': {{'id': 'U1', 'kind': 'car'}}, 'security': {{'admin_keys': ['{key}']}}}}, 'test')\n"
        "keys = signing.parse_public_keys(config.security.admin_keys)\n"
        f"assert ed25519.verify(keys[0], base64.b64decode('{signature}'), b'')\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "False"


def test_the_running_agent_never_loads_pydantic():
    # pydantic and its schema cost ~9 MiB held all day; the agent validates in a child.
    code = (
        "import sys, agent.cli, agent.runtime\n"
        "agent.cli.build_parser()\n"
        "from agent.adapters.config_child import validate_in_child\n"
        "from agent.core.dispatch import parse_call\n"
        "config = validate_in_child({'unit': {'id': 'U1', 'kind': 'car'}}, 'test')\n"
        "assert config.unit.id == 'U1'\n"
        "assert parse_call(b'{\"id\": \"C-1\", \"action\": \"cancel\"}').id == 'C-1'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
