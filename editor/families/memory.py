"""GPU memory each family needs under each memory option, from its full-size parameter counts.

The counts are those of editor/families/architecture.py (`pix2chat bench model --family`
prints them afresh); they are kept here as numbers so `pix2chat doctor` answers instantly.
Estimates cover the weights; activations at about 1 MP add 1-3 GB on top (more for batches).
"""

from __future__ import annotations

GB = 1024**3

FULL_SIZE_PARAMETERS: dict[str, dict[str, int]] = {
    "instruct-pix2pix": {
        "unet": 859_532_484,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
    },
    "sdxl-instruct-pix2pix": {
        "unet": 2_567_475_204,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },
    "flux-kontext": {
        "transformer": 11_901_408_320,
        "vae": 83_819_955,
        "text_encoder": 123_060_480,
        "text_encoder_2": 4_762_310_656,
    },
    "qwen-image-edit": {
        "transformer": 20_430_401_088,
        "vae": 126_892_531,
        "text_encoder": 8_292_166_656,
    },
}

MEMORY_OPTIONS: dict[str, str] = {
    "fp32": "float32 weights (dtype float32; CPU default)",
    "fp16/bf16": "half-precision weights (dtype float16 or bfloat16; CUDA default)",
    "offload": "bf16 + model CPU offload: one component on the GPU",
    "int8": "8-bit denoiser and largest text encoder (torchao int8wo / bitsandbytes 8-bit)",
    "nf4": "4-bit denoiser and largest text encoder (bitsandbytes nf4)",
}
"""The options estimated; int8 and nf4 need torchao or bitsandbytes and are not settings yet."""


def _quantized(family_parameters: dict[str, int], name: str) -> bool:
    """Under int8/nf4: the denoiser, the second text encoder (CLIP-bigG, T5) and a first one
    over a billion parameters (Qwen2.5-VL)."""
    return name in ("unet", "transformer", "text_encoder_2") or (
        name == "text_encoder" and family_parameters[name] > 1_000_000_000
    )


def estimate_bytes(parameters: dict[str, int], option: str) -> int:
    """Bytes of weights on the GPU for `parameters` (component -> count) under `option`."""
    if option == "fp32":
        return 4 * sum(parameters.values())
    if option == "fp16/bf16":
        return 2 * sum(parameters.values())
    if option == "offload":
        return 2 * max(parameters.values())
    per_parameter = {"int8": 1.0, "nf4": 0.5}.get(option)
    if per_parameter is None:
        raise ValueError(f"unknown memory option {option!r}; options: {', '.join(MEMORY_OPTIONS)}")
    return int(
        sum(
            count * (per_parameter if _quantized(parameters, name) else 2)
            for name, count in parameters.items()
        )
    )


def family_estimates_gb(family: str) -> dict[str, float]:
    """Option -> GB of weights for the full-size model of `family`."""
    parameters = FULL_SIZE_PARAMETERS[family]
    return {option: estimate_bytes(parameters, option) / GB for option in MEMORY_OPTIONS}


def option_of(dtype: str, device: str, offload: bool) -> str:
    """The memory option the settings amount to (dtype "auto" is fp16 on CUDA)."""
    if offload and device != "cpu":
        return "offload"
    if dtype == "float32" or (dtype == "auto" and device != "cuda"):
        return "fp32"
    return "fp16/bf16"
