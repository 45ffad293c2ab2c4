"""Which edit model families pix2chat serves, and which one a model folder belongs to.

A family is decided by the diffusers pipeline class a model folder names in its
model_index.json (`_class_name`), never by guessing from the model's name. Each family says
how pix2chat's parameters map onto its pipeline (docs/ARCHITECTURE.md, "Model families").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editor.errors import ModelLoadError
from editor.loading import check_local_path, offline_hint


@dataclass(frozen=True, slots=True)
class Family:
    """One family of instruction-edit pipelines and its rules.

    Attributes:
        name: what operators and /model lists show ("flux-kontext").
        pipeline_class: the diffusers class named in model_index.json.
        image_guidance: whether the pipeline has an image guidance scale; where it has not,
            /settings hides it and a user setting it is told so.
        multiple: both sides of the working image are multiples of this (pixels).
        native_resolution: long side the family was trained at, for the docs and doctor.
        text_guidance: which pipeline argument pix2chat's text guidance becomes.
    """

    name: str
    pipeline_class: str
    image_guidance: bool
    multiple: int
    native_resolution: int
    text_guidance: str


INSTRUCT_PIX2PIX = Family(
    name="instruct-pix2pix",
    pipeline_class="StableDiffusionInstructPix2PixPipeline",
    image_guidance=True,
    multiple=8,
    native_resolution=512,
    text_guidance="guidance_scale",
)
SDXL_INSTRUCT_PIX2PIX = Family(
    name="sdxl-instruct-pix2pix",
    pipeline_class="StableDiffusionXLInstructPix2PixPipeline",
    image_guidance=True,
    multiple=8,
    native_resolution=1024,
    text_guidance="guidance_scale",
)
FLUX_KONTEXT = Family(
    name="flux-kontext",
    pipeline_class="FluxKontextPipeline",
    image_guidance=False,
    multiple=16,
    native_resolution=1024,
    text_guidance="guidance_scale (distilled guidance)",
)

QWEN_IMAGE_EDIT = Family(
    name="qwen-image-edit",
    pipeline_class="QwenImageEditPipeline",
    image_guidance=False,
    multiple=16,
    native_resolution=1024,
    text_guidance="true_cfg_scale (against a blank negative prompt)",
)

FAMILIES: dict[str, Family] = {
    family.pipeline_class: family
    for family in (INSTRUCT_PIX2PIX, SDXL_INSTRUCT_PIX2PIX, FLUX_KONTEXT, QWEN_IMAGE_EDIT)
}
"""Supported families by pipeline class; each has a tiny pipeline in editor/testing that
runs end to end in the tests. QwenImageEditPlusPipeline (several input images) is not listed."""


def family_by_name(name: str) -> Family:
    """The family called `name` (for `pix2chat bench model --family`)."""
    for family in FAMILIES.values():
        if family.name == name:
            return family
    raise ModelLoadError(
        f"Unknown model family {name!r}; supported families: {supported_names()}.",
        option="family",
        value=name,
    )


def supported_names() -> str:
    return ", ".join(f"{f.name} ({f.pipeline_class})" for f in FAMILIES.values())


def read_model_index(model: str) -> dict[str, Any]:
    """The model's model_index.json: from its folder, or from the hub (cache first)."""
    check_local_path(model, "model")
    folder = Path(model).expanduser()
    try:
        if folder.is_dir():
            path = folder / "model_index.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "model_index.json"))
        index: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except Exception as exc:
        raise ModelLoadError(
            f"Could not read model_index.json of {model!r}: {exc}\n"
            "The model is a Hugging Face hub id or a folder written by save_pretrained."
            + offline_hint(),
            option="model",
            value=model,
        ) from exc
    return index


def read_family(model: str) -> Family:
    """The family of `model`, from its model_index.json `_class_name`.

    Raises:
        ModelLoadError: unreadable, or a pipeline class no family serves (the message lists
            the supported ones).
    """
    return family_of(model, read_model_index(model))


def family_of(model: str, index: dict[str, Any]) -> Family:
    """The family a model_index.json names (see `read_family`)."""
    class_name = str(index.get("_class_name", ""))
    family = FAMILIES.get(class_name)
    if family is None:
        raise ModelLoadError(
            f"The model {model!r} is a {class_name or 'pipeline without _class_name'}, which "
            f"pix2chat cannot edit with. Supported families: {supported_names()}.",
            option="model",
            value=model,
        )
    return family
