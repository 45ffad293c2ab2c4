"""The layer rule stays complete: every production module is covered by the contracts.

import-linter (run by ./scripts/test) checks the contracts in pyproject.toml; these tests make
sure a new module cannot slip past them unnoticed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTING = ("editor.testing", "editor.finetune.testing")


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
    return {contract["name"]: contract for contract in config["contracts"]}


def _modules(package: str) -> list[str]:
    """The modules of a package, packages' own __init__ files left out (they hold no code)."""
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py"
    ]


def _covered(module: str, roots: list[str]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def test_every_production_module_is_barred_from_test_doubles() -> None:
    contract = _contracts()["Production code never imports test doubles or tiny-model builders"]
    sources = list(contract["source_modules"])  # type: ignore[call-overload]
    tooling = ("bot.cli", "bot.commands")
    missing = [
        module
        for package in ("bot", "editor", "storage")
        for module in _modules(package)
        if not _covered(module, [*TESTING, *tooling]) and not _covered(module, sources)
    ]
    assert missing == [], f"add these modules to the contract's source_modules: {missing}"


def test_every_bot_subpackage_has_a_layer() -> None:
    contract = _contracts()[
        "Layers: commands > frontends > composition > service > scheduling > settings > storage > model"
    ]
    layers = [
        name.strip()
        for layer in contract["layers"]  # type: ignore[union-attr]
        for name in str(layer).replace(":", "|").split("|")
    ]
    unplaced = [module for module in _modules("bot") if not _covered(module, layers)]
    assert unplaced == [], f"place these modules in a layer of the contract: {unplaced}"
