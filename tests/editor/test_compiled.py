"""Compiled shapes: which batch sizes a request can use and how a batch is padded to them.

End-to-end compile tests (warm-up, padding, a failing compile) run the tiny model with each
speed option in tests/editor/test_speed_options.py.
"""

from __future__ import annotations

from PIL import Image

from editor.base import EditRequest
from editor.compiled import CompiledModules, padded_plan
from editor.params import EditParams


def _request(size: tuple[int, int] = (64, 64), guidance_scale: float = 7.5) -> EditRequest:
    params = EditParams(guidance_scale=guidance_scale)
    return EditRequest(Image.new("RGB", size), "make it night", params)


def test_padded_plan_uses_only_compiled_batch_sizes() -> None:
    assert padded_plan(1, (1, 2, 4)) == [(1, 1)]
    assert padded_plan(3, (1, 2, 4)) == [(3, 4)]
    assert padded_plan(4, (4,)) == [(4, 4)]
    assert padded_plan(6, (1, 2, 4)) == [(4, 4), (2, 2)]
    assert padded_plan(9, (2, 4)) == [(4, 4), (4, 4), (1, 2)]


def test_compiled_batch_sizes_are_those_warmed_up_for_the_image_size() -> None:
    modules = CompiledModules()
    assert not modules and modules.batch_sizes(_request()) == []  # compile off

    modules.compiled["unet"] = modules.plain["unet"] = object()  # type: ignore[assignment]
    modules.warm |= {(64, 64, 4), (64, 64, 1), (96, 64, 2)}

    assert modules
    assert modules.batch_sizes(_request()) == [1, 4]
    assert modules.batch_sizes(_request((96, 64))) == [2]
    assert modules.batch_sizes(_request((64, 96))) == []
    # Without text guidance the UNet sees another batch shape: never compiled.
    assert modules.batch_sizes(_request(guidance_scale=1.0)) == []
