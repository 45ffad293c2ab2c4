"""Several models in one process: each loaded on first use, least recently used unloaded first.

The pool is itself an `Editor`, so the schedulers stay as they are: a batch never mixes
models (the model name is part of the batch signature), and the pool hands it to the editor
named by its requests' `EditParams.model`. A memory budget (gigabytes) bounds how many stay
loaded: before loading one, the least recently used others are unloaded until the expected
total fits. Expected sizes are the weights' bytes once measured, else their size on disk.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback

log = logging.getLogger(__name__)

GB = 1024**3


class UnknownModel(LookupError):
    """The edit names a model this deployment does not serve (any more): it fails."""


class Unloadable(Protocol):
    def unload(self) -> None: ...


class ModelPool:
    """Named editors behind one `Editor`; `default` serves requests that name no model.

    Args:
        editors: name -> editor (constructed, not loaded: construction is cheap).
        default: the name of the model for `EditParams.model == ""`.
        memory_gb: budget for loaded weights; None keeps every model once loaded.
        footprint: bytes a model needs before it was ever loaded (default: weights on disk).
    """

    def __init__(
        self,
        editors: Mapping[str, Editor],
        default: str,
        *,
        memory_gb: float | None = None,
        footprint: Callable[[str, Editor], int] | None = None,
    ) -> None:
        if default not in editors:
            raise ValueError(f"default model {default!r} is not among {sorted(editors)}")
        self.editors = dict(editors)
        self.default = default
        self.budget = None if memory_gb is None else int(memory_gb * GB)
        self.footprint = footprint or disk_footprint
        self.loaded: OrderedDict[str, int] = OrderedDict()
        """Loaded models, least recently used first, with their bytes."""
        self.unloads = 0
        self.max_instruction_tokens = self.editors[default].max_instruction_tokens

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.editors)

    def load(self) -> None:
        """Load the default model (the others load when first asked for)."""
        self._use(self.default)

    def count_tokens(self, instruction: str) -> int:
        """The default model's count: admission checks before anyone picks a model."""
        count = self.editors[self.default].count_tokens(instruction)
        self.max_instruction_tokens = self.editors[self.default].max_instruction_tokens
        return count

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        if not requests:
            raise ValueError("`requests` must contain at least one request.")
        names = {request.params.model or self.default for request in requests}
        if len(names) > 1:
            raise ValueError(f"A batch must use one model, but got {sorted(names)}.")
        (name,) = names
        if name not in self.editors:
            raise UnknownModel(f"no model {name!r} here; models: {', '.join(self.editors)}")
        editor = self._use(name)
        return editor.edit_batch(requests, progress, preview)

    def describe(self) -> dict[str, str]:
        facts = self.editors[self.default].describe()
        return facts | {
            "models": ", ".join(
                f"{name}{' (loaded)' if name in self.loaded else ''}" for name in self.editors
            ),
            "memory budget": "none" if self.budget is None else f"{self.budget / GB:g} GB",
        }

    def _use(self, name: str) -> Editor:
        """The editor `name`, loaded, most recently used; others unloaded to make room."""
        editor = self.editors[name]
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return editor
        need = self.footprint(name, editor)
        if self.budget is not None:
            while self.loaded and sum(self.loaded.values()) + need > self.budget:
                self._unload(next(iter(self.loaded)))
        editor.load()
        self.loaded[name] = weight_bytes(editor) or need
        return editor

    def _unload(self, name: str) -> None:
        editor: Any = self.editors[name]
        log.info("unloading model %s to make room", name)
        editor.unload()
        del self.loaded[name]
        self.unloads += 1


def weight_bytes(editor: Editor) -> int:
    """Bytes of a loaded editor's pipeline weights (0 if it has no diffusers pipeline)."""
    pipe = getattr(editor, "pipeline", None)
    components = getattr(pipe, "components", {}) if pipe is not None else {}
    total = 0
    for component in components.values():
        parameters = getattr(component, "parameters", None)
        if callable(parameters):
            total += sum(p.numel() * p.element_size() for p in parameters())
    return total


def disk_footprint(name: str, editor: Editor) -> int:
    """Bytes of the model's weight files, when its folder is local (else 0: unknown)."""
    folder = Path(str(getattr(editor, "model", ""))).expanduser()
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
