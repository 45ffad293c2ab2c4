"""Memory estimates come from the real full-size architectures, counted on the meta device."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli
from editor.families.architecture import DENOISER, components, flops_per_step, parameter_counts
from editor.families.memory import (
    FULL_SIZE_PARAMETERS,
    GB,
    estimate_bytes,
    family_estimates_gb,
    option_of,
)


@pytest.mark.parametrize("family", sorted(FULL_SIZE_PARAMETERS))
def test_the_kept_counts_are_the_architectures(family: str) -> None:
    assert parameter_counts(components(family)) == FULL_SIZE_PARAMETERS[family]


def test_kontext_is_about_twelve_billion_and_costs_more_per_step_than_sdxl() -> None:
    kontext, sdxl = components("flux-kontext"), components("sdxl-instruct-pix2pix")
    assert 11.8e9 < FULL_SIZE_PARAMETERS["flux-kontext"]["transformer"] < 12.0e9
    kontext_flops = flops_per_step("flux-kontext", kontext[DENOISER["flux-kontext"]])
    sdxl_flops = flops_per_step("sdxl-instruct-pix2pix", sdxl[DENOISER["sdxl-instruct-pix2pix"]])
    assert kontext_flops > 5 * sdxl_flops > 0


def test_each_option_needs_less_than_the_one_before() -> None:
    estimates = family_estimates_gb("flux-kontext")
    order = ["fp32", "fp16/bf16", "offload", "int8", "nf4"]
    values = [estimates[option] for option in order]
    assert values == sorted(values, reverse=True)
    parameters = {"transformer": 10, "text_encoder": 4}
    assert estimate_bytes(parameters, "fp16/bf16") == 28
    assert estimate_bytes(parameters, "offload") == 20
    assert estimate_bytes(parameters, "nf4") == 5 + 8
    with pytest.raises(ValueError, match="nf4"):
        estimate_bytes(parameters, "int2")
    assert GB == 2**30


def test_settings_name_their_memory_option() -> None:
    assert option_of("auto", "cuda", offload=False) == "fp16/bf16"
    assert option_of("auto", "cpu", offload=False) == "fp32"
    assert option_of("bfloat16", "cuda", offload=True) == "offload"
    assert option_of("float32", "cpu", offload=True) == "fp32"  # no offload without a GPU


def test_bench_with_an_unknown_family_lists_the_supported_ones() -> None:
    result = CliRunner().invoke(cli, ["bench", "model", "--family", "hidream-e1"])

    assert result.exit_code == 2
    assert "flux-kontext" in result.output
