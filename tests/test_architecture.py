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


def _module_graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, at the top or inside a function
    (a lazy import is a dependency all the same); ``from p import m`` counts as importing ``p.m``."""
    paths = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(_module_graph("agent", "hil")) == []


# What each layer may import of ``agent``; anything not listed (the runtime, the CLI and
# its tools) is the top, which nothing below imports. The config is the bottom: plain
# dataclasses, validated by pydantic in config_validate (above it, beside the core); the
# core reads the config; adapters read both. Under all of them, the one error of a file a
# person wrote (agent.problems), which the rig's scenario error shares.
LAYERS = {
    "agent.problems": set(),
    "agent.config": {"agent.problems"},
    "agent.config_validate": {"agent.config", "agent.problems"},
    "agent.core": {"agent.config", "agent.problems"},
    "agent.adapters": {"agent.config", "agent.core", "agent.problems"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_layers_run_one_way():
    for module, imported in _module_graph("agent").items():
        allowed = LAYERS.get(_layer(module))
        if allowed is None:
            continue  # the top
        for name in imported:
            if name == "agent":
                continue  # the package's own __init__ (its version)
            assert _layer(name) == _layer(module) or _layer(name) in allowed, f"{module} imports {name}"


def test_adapters_never_import_the_composition_root():
    for path in (ROOT / "agent" / "adapters").rglob("*.py"):
        assert not any(n in ("agent.runtime", "agent.cli") for n in _imports(path)), path


def test_agent_never_imports_hil():
    for path in (ROOT / "agent").rglob("*.py"):
        assert not any(n == "hil" or n.startswith("hil.") for n in _imports(path)), path


def test_signatures_are_verified_by_libsodium_and_no_cryptography_is_home_made():
    # The running agent verifies with libsodium (PyNaCl): its memory target is per real
    # profile (<= 64 MiB, flat over days), no longer a 40 MiB figure that pushed Ed25519
    # into hand-written Python. The canonical form is the rfc8785 package's.
    from nacl.signing import VerifyKey

    from agent.core import signing

    key = signing.parse_public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")  # RFC 8032 TEST 1
    assert isinstance(key, VerifyKey)
    assert not (ROOT / "agent" / "core" / "ed25519.py").exists()
    # Curve arithmetic would show its field prime or group order somewhere.
    markers = ("2**255", "2 ** 255", "2**252", "2 ** 252", "57896044618658097711785492504343953926634992332820282019728792003956564819949")
    for path in (ROOT / "agent").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not any(m in text for m in markers), f"{path} looks like hand-written curve arithmetic"
    # Nor a hand-written canonicaliser: the signed bytes come from rfc8785.
    assert "rfc8785" in _imports(ROOT / "agent" / "core" / "signing.py")


def _loaded_by(*modules: str) -> set[str]:
    """Top-level packages (and agent modules) in ``sys.modules`` after importing ``modules`` in a fresh process."""
    code = (
        "import sys, importlib\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted({n if n.startswith('agent.') else n.split('.')[0] for n in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return set(out.split())


def test_each_profile_loads_only_the_screen_it_drives():
    # Memory is per real profile (docs/performance.md): a car does not pay for the OLED's
    # drawing stack, a motorcycle not for the touchscreen's web server, and neither for
    # the tools (schema generation, the browser, the rig, the admin's private keys: the
    # unit verifies with PyNaCl, and cryptography with its own OpenSSL would cost 6 MiB).
    tools = {"playwright", "hil", "bench", "pytest", "agent.contract_tools", "agent.gnss_tools", "cryptography"}
    oled = {"PIL", "luma", "arabic_reshaper", "bidi"}
    web = {"uvicorn", "starlette", "click"}
    car = _loaded_by("agent.cli", "agent.runtime", "agent.adapters.web_ui")
    motorcycle = _loaded_by("agent.cli", "agent.runtime", "agent.adapters.panel_display")
    assert web <= car and oled - {"luma"} <= motorcycle  # (luma: loaded when the device is made)
    assert car & (tools | oled) == set()
    assert motorcycle & (tools | web) == set()


# ------------------------------------------------------------ one way each


def _python_files(*folders: str) -> list[Path]:
    """The code of ``folders``, this file aside (it names what it looks for)."""
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in p.parts and p != Path(__file__).resolve()]


def _trees(*folders: str) -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path))) for path in _python_files(*folders)]


def test_bench_peers_are_modules_and_no_code_is_run_from_a_string():
    # A peer (the bare program the agent is compared with) is a module of bench/peers, run with
    # `python -m bench.peers.NAME`: linted and imported like any code, and run by
    # tests/test_bench_peers.py. Nothing hands Python source to `python -c`.
    import bench.peers

    for name in bench.peers.PEERS:
        assert (ROOT / "bench" / "peers" / f"{name}.py").is_file(), name
    for path, tree in _trees("bench", "hil"):
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple)):
                items = [ast.unparse(e) for e in node.elts]
                assert not ("sys.executable" in items and "'-c'" in items), \
                    f"{path}:{node.lineno}: Python run from a string; make it a module"


def test_one_set_of_chromium_arguments():
    # hil/browser.py: the tests, the bench and the rig drive the kiosk's Chromium the same way.
    for path, tree in _trees("agent", "hil", "bench", "tests"):
        if path == ROOT / "hil" / "browser.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "--headless":
                raise AssertionError(f"{path}:{node.lineno}: Chromium arguments outside hil/browser.py")
            if isinstance(node, ast.Attribute) and node.attr == "launch" and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "chromium":
                raise AssertionError(f"{path}:{node.lineno}: launch Chromium with hil.browser.launch")


def test_one_wait_helper():
    # hil/wait.py polls a condition with no event to wait on; nothing else defines its own.
    for path, tree in _trees("agent", "hil", "bench", "tests"):
        if path == ROOT / "hil" / "wait.py":
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in ("wait_until", "poll_until", "_wait", "wait"):
                raise AssertionError(f"{path}:{node.lineno}: a wait helper of its own ({node.name}); use hil.wait")


def test_one_error_for_a_file_a_person_wrote():
    # agent.problems.ProblemsError: (key path, message) pairs, all at once; the config's and the
    # scenario's errors are that class, not copies of it.
    from agent.config import ConfigError
    from agent.problems import ProblemsError
    from hil.scenario import ScenarioError

    assert issubclass(ConfigError, ProblemsError) and issubclass(ScenarioError, ProblemsError)
    for path, tree in _trees("agent", "hil", "bench"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name != "ProblemsError":
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__" and \
                            [a.arg for a in item.args.args] == ["self", "source", "problems"]:
                        raise AssertionError(f"{path}:{node.lineno}: {node.name} copies ProblemsError")


def test_passwords_and_schemas_are_left_to_their_tools():
    # Mosquitto's password file is hashed by mosquitto_passwd (hil.broker), JSON Schema judged by
    # jsonschema (tests/test_docs.py), scenario files by pydantic models (hil/scenario_schema.py).
    for path in _python_files("hil", "bench", "tests"):
        text = path.read_text(encoding="utf-8")
        assert "pbkdf2_hmac" not in text, f"{path}: Mosquitto passwords hashed by hand"
    assert "jsonschema" in _imports(ROOT / "tests" / "test_docs.py")
    assert "pydantic" in _imports(ROOT / "hil" / "scenario_schema.py")
    from pydantic import BaseModel

    from hil.scenario_schema import EXPECT_MODELS, STEP_MODELS

    assert all(issubclass(m, BaseModel) for m in (*STEP_MODELS.values(), *EXPECT_MODELS.values()))
