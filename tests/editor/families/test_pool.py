"""The model pool routes each batch to its model, loads on first use and evicts by recency."""

from __future__ import annotations

import pytest
from PIL import Image

from editor.base import EditRequest
from editor.families.pool import ModelPool, UnknownModel
from editor.params import EditParams
from editor.testing.doubles import NullEditor


class Sized(NullEditor):
    """A double that counts its loads and unloads."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.unloads = 0

    def load(self) -> None:
        self.loads += 1

    def unload(self) -> None:
        self.unloads += 1


def _request(model: str) -> EditRequest:
    return EditRequest(
        Image.new("RGB", (16, 16)), "x", EditParams(num_inference_steps=1, model=model)
    )


def _pool(budget_gb: float | None) -> tuple[ModelPool, dict[str, Sized]]:
    editors = {"a": Sized(), "b": Sized(), "c": Sized()}
    sizes = {"a": 2, "b": 2, "c": 3}  # GB each
    pool = ModelPool(
        editors,
        "a",
        memory_gb=budget_gb,
        footprint=lambda name, _editor: sizes[name] * 1024**3,
    )
    return pool, editors


def test_batches_go_to_their_model_and_unnamed_ones_to_the_default() -> None:
    pool, editors = _pool(None)

    pool.edit_batch([_request("")])
    pool.edit_batch([_request("b")])

    assert len(editors["a"].calls) == 1 and len(editors["b"].calls) == 1
    assert list(pool.loaded) == ["a", "b"] and pool.unloads == 0
    assert "b (loaded)" in pool.describe()["models"]


def test_the_least_recently_used_goes_when_the_next_would_not_fit() -> None:
    pool, editors = _pool(5)
    pool.load()
    pool.edit_batch([_request("b")])  # a + b = 4 GB
    pool.edit_batch([_request("a")])  # a used last: b is the least recent

    pool.edit_batch([_request("c")])  # 3 GB more: b (2) goes, a + c = 5 fits

    assert list(pool.loaded) == ["a", "c"]
    assert editors["b"].unloads == 1 and editors["a"].unloads == 0
    pool.edit_batch([_request("b")])  # back: a, now the least recent, makes room
    assert list(pool.loaded) == ["c", "b"]
    assert editors["a"].unloads == 1 and editors["b"].loads == 2
    assert pool.unloads == 2


def test_an_unknown_or_mixed_batch_is_refused() -> None:
    pool, _ = _pool(None)

    with pytest.raises(UnknownModel, match="a, b, c"):
        pool.edit_batch([_request("qwen")])
    with pytest.raises(ValueError, match="one model"):
        pool.edit_batch([_request("a"), _request("b")])
    with pytest.raises(ValueError, match="default model"):
        ModelPool({"a": NullEditor()}, "z")
