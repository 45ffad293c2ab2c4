"""The exact parameter counts behind the guide's memory figures."""

from __future__ import annotations

from bot.commands.bench_finetune import parameter_counts


def test_the_sd15_sized_unet_has_instructpix2pix_s_parameter_count() -> None:
    total, lora = parameter_counts(lora_rank=16)
    # SD 1.5's UNet (859,520,964) plus InstructPix2Pix's 4 extra input channels (4 x 320 x 3 x 3).
    assert total == 859_520_964 + 4 * 320 * 3 * 3
    assert parameter_counts(lora_rank=32)[1] == 2 * lora
    assert 0 < lora < 0.005 * total
