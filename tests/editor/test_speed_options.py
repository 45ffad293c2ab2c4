"""Every speed option gives the plain path's picture at the same seed (tiny model, CPU).

The plain path is the default editor (`tiny_editor`). Pixels are compared as 8-bit RGB: an
option "agrees" when no pixel differs by more than `MAX_DIFF` levels and the mean difference is
under `MEAN_DIFF`; a different seed differs by far more (checked below, so the tolerance means
something).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from editor.base import EditRequest, ProgressCallback, is_out_of_memory
from editor.errors import ModelLoadError, OptionError
from editor.params import EditParams
from editor.pix2pix import DiffusersEditor
from editor.preview import PreviewCallback
from editor.speed import SpeedOptions, parse_ints, parse_sizes

MAX_DIFF = 4
MEAN_DIFF = 0.5
SIZE = (64, 64)


def _photo(size: tuple[int, int] = SIZE, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _requests(
    count: int, steps: int = 2, size: tuple[int, int] = SIZE, first_seed: int = 10
) -> list[EditRequest]:
    instructions = ["make it night", "add snow", "paint it red", "turn it into a sketch"]
    return [
        EditRequest(
            _photo(size, seed=i),
            instructions[i % len(instructions)],
            EditParams(num_inference_steps=steps, seed=first_seed + i),
        )
        for i in range(count)
    ]


def _diff(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16))


def _assert_agree(
    results: Sequence[Image.Image],
    expected: Sequence[Image.Image],
    max_diff: int = MAX_DIFF,
    mean_diff: float = MEAN_DIFF,
) -> None:
    assert len(results) == len(expected)
    for result, reference in zip(results, expected, strict=True):
        assert result.size == reference.size
        diff = _diff(result, reference)
        assert diff.max() <= max_diff, f"max pixel difference {diff.max()}"
        assert diff.mean() <= mean_diff, f"mean pixel difference {diff.mean():.3f}"


@pytest.fixture(scope="module")
def plain_results(tiny_editor: DiffusersEditor) -> list[Image.Image]:
    """Three requests edited one by one on the plain path."""
    return [tiny_editor.edit_batch([request])[0] for request in _requests(3)]


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """Compiled graphs of one test must not count against another's recompile limit."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_tolerance_tells_a_different_seed_apart(tiny_editor: DiffusersEditor) -> None:
    [same] = tiny_editor.edit_batch(_requests(1))
    [other] = tiny_editor.edit_batch(_requests(1, first_seed=99))

    assert _diff(same, other).mean() > 10 * MEAN_DIFF
    with pytest.raises(AssertionError):
        _assert_agree([other], [same])


def test_batch_of_n_equals_n_singles(
    tiny_editor: DiffusersEditor, plain_results: list[Image.Image]
) -> None:
    batched = tiny_editor.edit_batch(_requests(3))

    _assert_agree(batched, plain_results)


@pytest.mark.parametrize(
    ("speed", "dtype", "max_diff", "mean_diff"),
    [
        (SpeedOptions(attention="classic"), "auto", MAX_DIFF, MEAN_DIFF),
        (SpeedOptions(channels_last=True), "auto", MAX_DIFF, MEAN_DIFF),
        (SpeedOptions(fuse_qkv=True), "auto", MAX_DIFF, MEAN_DIFF),
        (SpeedOptions(channels_last=True, fuse_qkv=True), "auto", MAX_DIFF, MEAN_DIFF),
        # bfloat16 keeps 8 mantissa bits: close, not equal.
        (SpeedOptions(), "bfloat16", 48, 6.0),
    ],
    ids=["classic-attention", "channels-last", "fused-qkv", "channels-last+fused-qkv", "bf16"],
)
def test_option_agrees_with_the_plain_path(
    tiny_model_dir: Path,
    plain_results: list[Image.Image],
    speed: SpeedOptions,
    dtype: str,
    max_diff: int,
    mean_diff: float,
) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", dtype=dtype, speed=speed)

    results = editor.edit_batch(_requests(3))

    _assert_agree(results, plain_results, max_diff, mean_diff)
    if speed.fuse_qkv:
        assert "FusedAttnProcessor2_0" in editor.describe()["attention"]


def test_describe_names_the_speed_options(tiny_model_dir: Path) -> None:
    speed = SpeedOptions(channels_last=True, fuse_qkv=True)
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)
    assert editor.describe()["speed"] == "sdpa, channels_last, fuse_qkv (not loaded)"

    editor.load()

    assert editor.describe()["speed"] == "sdpa, channels_last, fuse_qkv"
    assert editor.describe()["attention"] == "FusedAttnProcessor2_0 (PyTorch SDPA)"


class _CountingBackend:
    """A torch.compile backend that counts the graphs it compiles and the calls they get."""

    def __init__(self) -> None:
        self.graphs = 0
        self.calls = 0

    def __call__(self, graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        self.graphs += 1

        def run(*args: Any) -> Any:
            self.calls += 1
            return graph.forward(*args)

        return run


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_shapes_are_warm_and_batches_are_padded_not_recompiled(
    tiny_model_dir: Path, plain_results: list[Image.Image]
) -> None:
    backend = _CountingBackend()
    speed = SpeedOptions(
        compile="unet+vae",
        compile_sizes=(SIZE,),
        compile_batch_sizes=(1, 2),
        compile_backend=backend,
    )
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)

    editor.load()  # compiles and warms up every (size, batch size)
    graphs_at_load, calls_at_load = backend.graphs, backend.calls
    assert graphs_at_load >= 4  # UNet and decoder, at batch 1 and 2
    assert "2 shape(s) compiled" in editor.describe()["speed"]

    three = editor.edit_batch(_requests(3))  # a batch of 2 and one of 1, both compiled
    calls_after_three = backend.calls
    other_size = editor.edit_batch(_requests(1, size=(96, 64)))  # not compiled: plain modules

    assert backend.graphs == graphs_at_load, "a user request triggered a compile"
    assert calls_after_three > calls_at_load, "the compiled graphs were not used"
    assert backend.calls == calls_after_three, "an uncompiled size ran through the compiler"
    _assert_agree(three, plain_results)
    assert other_size[0].size == (96, 64)


@pytest.mark.usefixtures("fresh_dynamo")
def test_padding_to_a_compiled_batch_size_drops_the_padding(
    tiny_model_dir: Path, plain_results: list[Image.Image]
) -> None:
    """Batch 3 with only batch 4 compiled: one call of 4, the duplicate's result dropped."""
    backend = _CountingBackend()
    speed = SpeedOptions(
        compile="unet", compile_sizes=(SIZE,), compile_batch_sizes=(4,), compile_backend=backend
    )
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)
    calls: list[int] = []
    editor.load()
    pipe_call = type(editor.pipeline).__call__

    def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["prompt"]))
        return pipe_call(pipe, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(editor.pipeline), "__call__", spy)
        results = editor.edit_batch(_requests(3))

    assert calls == [4]
    _assert_agree(results, plain_results)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_dynamo")
def test_inductor_compiled_unet_agrees_with_the_plain_path(
    tiny_model_dir: Path, plain_results: list[Image.Image]
) -> None:
    """The real inductor backend on the CPU (C++ codegen through gcc), one shape to stay quick."""
    speed = SpeedOptions(compile="unet", compile_sizes=(SIZE,), compile_batch_sizes=(2,))
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)

    results = editor.edit_batch(_requests(3))  # 2 + 1 padded to 2

    assert editor.describe()["speed"] == "sdpa, compile unet (default), 1 shape(s) compiled"
    _assert_agree(results, plain_results)


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_failing_compile_is_a_load_error_that_names_the_setting(tiny_model_dir: Path) -> None:
    def broken(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        raise RuntimeError("inductor exploded")

    speed = SpeedOptions(
        compile="unet", compile_sizes=(SIZE,), compile_batch_sizes=(1,), compile_backend=broken
    )

    with pytest.raises(ModelLoadError, match="compile off") as caught:
        DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed).load()

    error = caught.value
    assert (error.option, error.value, error.suggestion) == ("compile", "unet", "off")


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_batch_size_without_memory_to_compile_is_left_out(
    tiny_model_dir: Path, plain_results: list[Image.Image]
) -> None:
    """The UNet graph for batch 2 (6 samples) 'runs out of memory' while compiling."""
    counting = _CountingBackend()

    def tight(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        if any(isinstance(i, torch.Tensor) and i.dim() == 4 and i.shape[0] == 6 for i in inputs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return counting(graph, inputs)

    speed = SpeedOptions(
        compile="unet", compile_sizes=(SIZE,), compile_batch_sizes=(1, 2, 4), compile_backend=tight
    )
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)

    editor.load()
    results = editor.edit_batch(_requests(3))  # three compiled batches of 1

    assert editor.compiled_shapes == {(64, 64, 1)}
    _assert_agree(results, plain_results)


def test_cuda_graphs_on_the_cpu_are_ignored_with_a_warning(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speed = SpeedOptions(
        compile="unet",
        cuda_graphs=True,
        compile_sizes=(SIZE,),
        compile_batch_sizes=(1,),
        compile_backend=_CountingBackend(),
    )
    assert speed.inductor_mode("cuda") is None  # a custom backend takes no inductor mode
    assert SpeedOptions(compile="unet", cuda_graphs=True).inductor_mode("cuda") == "reduce-overhead"
    assert SpeedOptions(compile="unet", cuda_graphs=True).inductor_mode("cpu") == "default"
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)

    with caplog.at_level(logging.WARNING, logger="editor.compiled"):
        torch._dynamo.reset()
        editor.load()

    assert "cuda_graphs is ignored on cpu" in caplog.text
    assert "cuda_graphs ignored on cpu" in editor.describe()["speed"]


def test_conflicting_options_are_refused_with_the_setting_to_change() -> None:
    with pytest.raises(OptionError, match="compile") as caught:
        SpeedOptions(cuda_graphs=True)
    assert (caught.value.option, caught.value.suggestion) == ("compile", "unet")
    with pytest.raises(ValueError, match="attention=sdpa"):
        SpeedOptions(attention="classic", fuse_qkv=True)
    with pytest.raises(ValueError, match="multiples of 8"):
        SpeedOptions(compile_sizes=((500, 512),))
    with pytest.raises(ValueError, match="compile must be"):
        SpeedOptions(compile="vae")  # type: ignore[arg-type]


class _OutOfMemoryAbove(DiffusersEditor):
    """The real editor, except that pipeline calls over `limit` samples run out of memory."""

    def __init__(self, model: str, limit: int) -> None:
        super().__init__(model, device="cpu")
        self.limit = limit
        self.sizes: list[int] = []

    def _run(
        self,
        requests: Sequence[EditRequest],
        batch_size: int,
        compiled: bool,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        offset: int = 0,
    ) -> list[Image.Image]:
        self.sizes.append(batch_size)
        if batch_size > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._run(requests, batch_size, compiled, progress, preview, offset)


def test_out_of_memory_splits_the_batch_and_keeps_every_result(
    tiny_model_dir: Path, tiny_editor: DiffusersEditor
) -> None:
    requests = _requests(4)
    expected = tiny_editor.edit_batch(requests)
    editor = _OutOfMemoryAbove(str(tiny_model_dir), limit=1)

    results = editor.edit_batch(requests)

    assert editor.sizes == [4, 2, 1, 1, 2, 1, 1]
    assert editor.oom_splits == 3
    _assert_agree(results, expected)


def test_a_single_request_that_does_not_fit_raises(tiny_model_dir: Path) -> None:
    editor = _OutOfMemoryAbove(str(tiny_model_dir), limit=0)

    with pytest.raises(torch.OutOfMemoryError):
        editor.edit_batch(_requests(2))

    assert editor.sizes == [2, 1]


def test_other_errors_are_not_retried(tiny_model_dir: Path) -> None:
    class Broken(_OutOfMemoryAbove):
        def _run(self, requests: Sequence[EditRequest], *args: Any, **kwargs: Any) -> Any:
            self.sizes.append(len(requests))
            raise RuntimeError("expected all tensors to be on the same device")

    editor = Broken(str(tiny_model_dir), limit=8)

    with pytest.raises(RuntimeError, match="same device"):
        editor.edit_batch(_requests(2))
    assert editor.sizes == [2]


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_previews_arrive_every_n_steps_and_do_not_change_the_result(
    tiny_model_dir: Path, tiny_preview_dir: Path, tiny_editor: DiffusersEditor
) -> None:
    speed = SpeedOptions(preview="taesd", preview_model=str(tiny_preview_dir), preview_every=2)
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed)
    requests = _requests(2, steps=5)
    seen: list[tuple[int, int, dict[int, tuple[int, int]]]] = []

    def on_preview(step: int, total: int, images: Mapping[int, Image.Image]) -> None:
        seen.append((step, total, {i: image.size for i, image in images.items()}))

    with_previews = editor.edit_batch(requests, preview=on_preview)
    without = tiny_editor.edit_batch(requests)

    assert seen == [(2, 5, {0: SIZE, 1: SIZE}), (4, 5, {0: SIZE, 1: SIZE})]
    for result, reference in zip(with_previews, without, strict=True):
        assert np.array_equal(np.asarray(result), np.asarray(reference))


def test_previews_of_a_split_batch_keep_each_request_index(
    tiny_model_dir: Path, tiny_preview_dir: Path
) -> None:
    editor = _OutOfMemoryAbove(str(tiny_model_dir), limit=1)
    editor.speed = SpeedOptions(preview="taesd", preview_model=str(tiny_preview_dir))
    indexes: list[int] = []

    editor.edit_batch(
        _requests(3, steps=6), preview=lambda _step, _total, images: indexes.extend(images)
    )

    assert indexes == [0, 1, 2]


def test_missing_preview_model_names_the_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    speed = SpeedOptions(preview="taesd", preview_model=str(tmp_path / "no-taesd"))

    with pytest.raises(ModelLoadError, match="no-taesd") as caught:
        DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed).load()

    assert caught.value.option == "preview_model"


def test_size_and_batch_lists_parse() -> None:
    assert parse_sizes("512x512, 512x384,384X512") == ((512, 512), (512, 384), (384, 512))
    assert parse_ints("1,2,4") == (1, 2, 4)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_sizes("512")
    with pytest.raises(ValueError, match="integers"):
        parse_ints("1,two")
