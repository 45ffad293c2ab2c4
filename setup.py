"""Build hook: the gettext catalogues (bot/locale/*/LC_MESSAGES/*.po) are compiled to .mo
files with Babel when a wheel is built (`pip install .`, the Dockerfile). Everything else about
the package is in pyproject.toml. An editable install or a source checkout needs no .mo: the
catalogues are compiled in memory at first use (bot/service/catalogues.py)."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path("bot") / "locale"


class BuildWithCatalogues(build_py):
    """build_py, then every .po compiled to a .mo beside its copy in the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
            target = Path(self.build_lib) / po.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source)
            with target.open("wb") as compiled:
                write_mo(compiled, catalog)
            self.announce(f"compiled {po} -> {target}", level=2)


setup(cmdclass={"build_py": BuildWithCatalogues})
