"""Rules of the model layer that import-linter cannot check."""

from __future__ import annotations

from pathlib import Path

EDITOR = Path(__file__).resolve().parents[2] / "editor"


def test_the_model_layer_names_no_bot_setting() -> None:
    """Errors name the editor's own arguments; the bot adds which PIX2CHAT_ setting sets them."""
    offenders = [
        str(path.relative_to(EDITOR.parent))
        for path in sorted(EDITOR.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and "PIX2CHAT_" in path.read_text("utf-8", errors="ignore")
    ]

    assert offenders == []
