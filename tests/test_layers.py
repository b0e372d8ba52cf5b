"""The architecture, enforced: which layer may import which.

- `gatekeeper/core/` is pure: it imports only the core and `policy`, names no platform, and reaches no
  store, network or clock.
- `policy/` imports only itself and the core.
- `worker/` imports the core, `policy`, the port (`forges/port.py`), `state/` and settings: never an
  adapter, so every platform is reached through the one port.
- `state/` never imports the worker, an adapter or the web layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "gatekeeper"


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "gatekeeper"}
    return found


def _internal(path: Path) -> set[str]:
    return {m for m in _imports(path) if m == "gatekeeper" or m.startswith("gatekeeper.")}


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# Pure means: nothing that talks to a store, a network, a process, or reads the clock.
IMPURE = ("redis", "rq", "requests", "flask", "github", "gitlab", "gidgethub", "urllib", "http", "socket",
          "subprocess", "time", "os", "fakeredis", "gunicorn")


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_only_core_and_policy(path):
    """The decision core depends on nothing but itself and the policy model."""
    wrong = {m for m in _internal(path) if not _allowed(m, ("gatekeeper.core", "gatekeeper.policy"))}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_is_pure(path):
    """The core reaches no store, network or clock: every fact it uses is handed to it."""
    impure = {m for m in _imports(path) if m.split(".")[0] in IMPURE}
    assert not impure, f"{path.name} imports {sorted(impure)}"
    assert not re.search(r"\b(datetime\.now|date\.today|time\.time)\b", path.read_text())


def test_core_names_no_platform():
    """`grep -rli github gatekeeper/core` prints nothing: platform knowledge lives in the adapters."""
    named = [p.name for p in _modules("core") if re.search(r"github|gitlab", p.read_text(), re.IGNORECASE)]
    assert named == []


@pytest.mark.parametrize("path", _modules("policy"), ids=lambda p: p.name)
def test_policy_imports_only_policy_and_core(path):
    """The policy language is read and compiled without any platform, store or worker."""
    wrong = {m for m in _internal(path) if not _allowed(m, ("gatekeeper.policy", "gatekeeper.core"))}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


WORKER_MAY = ("gatekeeper.core", "gatekeeper.policy", "gatekeeper.forges.port", "gatekeeper.state",
              "gatekeeper.settings", "gatekeeper.worker", "gatekeeper.tokens.revoke", "gatekeeper.tokens.audit")
# Agent tokens: authentication, the grant's facts and revocation. Platforms only through the port.
TOKENS_MAY = ("gatekeeper.core", "gatekeeper.policy", "gatekeeper.forges.port", "gatekeeper.state",
              "gatekeeper.settings", "gatekeeper.tokens", "gatekeeper.worker.gather")


@pytest.mark.parametrize("path", _modules("tokens"), ids=lambda p: p.name)
def test_tokens_reach_platforms_only_through_the_port(path):
    """Issuing and revoking agent tokens never names an adapter: each platform's TokenIssuer does."""
    wrong = {m for m in _internal(path) if not _allowed(m, TOKENS_MAY)}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules("worker"), ids=lambda p: p.name)
def test_worker_reaches_platforms_only_through_the_port(path):
    """The worker imports the core, the port and the store: never an adapter module."""
    wrong = {m for m in _internal(path) if not _allowed(m, WORKER_MAY)}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules("state"), ids=lambda p: p.name)
def test_state_sits_below_the_worker_and_the_adapters(path):
    """The store layer knows records, not who uses them."""
    wrong = {m for m in _internal(path)
             if _allowed(m, ("gatekeeper.worker", "gatekeeper.web", "gatekeeper.cli", "gatekeeper.forges.github",
                             "gatekeeper.forges.recording", "gatekeeper.forges.factory"))}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


def test_every_redis_key_is_named_in_state_keys():
    """Keys are built in one module (`state/keys.py`), with their lifetimes: nothing else spells one."""
    spelled = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
               if p.name != "keys.py" and re.search(r"""["']agentgate:[a-z]""", p.read_text())]
    builders = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
                if p.name != "keys.py" and re.search(r"\bkeys\.key\(|\bfrom gatekeeper\.state\.keys import key\b",
                                                      p.read_text())]
    assert spelled == [] and builders == []
