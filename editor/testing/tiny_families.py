"""Tiny random-weight SDXL InstructPix2Pix, FLUX.1 Kontext and Qwen-Image-Edit pipelines.

Like editor/testing/tiny.py for IP2P: real diffusers classes (UNet with SDXL's added
conditioning, Flux transformer, VAEs, CLIP and T5 text encoders) a few channels wide, saved
with `save_pretrained` so tests load them through the production loader. Tokenizers come from
the tokenizers library with no download: CLIP's byte-level one (editor/tokenizer.py) and a
T5 unigram vocabulary of single characters, Qwen2's byte-level BPE without merges.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import AutoencoderKLQwenImage
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.flux.pipeline_flux_kontext import FluxKontextPipeline
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import QwenImageEditPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_instruct_pix2pix import (
    StableDiffusionXLInstructPix2PixPipeline,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from editor.lora import LORA_TARGET_MODULES
from editor.testing.tiny import tiny_text_config
from editor.tokenizer import build_byte_tokenizer, bytes_to_unicode

T5_MAX_LENGTH = 64
"""The tiny T5 reads this many tokens (Kontext's real one reads 512): keeps tests fast."""


T5_SPECIAL_IDS: dict[str, Any] = {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
"""<pad>, </s> as `t5_tokenizer` numbers them (typed loosely: transformers 5's T5Config
signature no longer lists the decoder start id, which the saved config still carries)."""


def clip_tokenizer() -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as folder:
        return build_byte_tokenizer(Path(folder))


def t5_tokenizer() -> T5Tokenizer:
    """T5's tokenizer class over a unigram vocabulary of printable ASCII characters."""
    characters = [chr(c) for c in range(32, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + c, -1.0) for c in characters] + [(c, -2.0) for c in characters]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_tiny_sdxl_pix2pix(path: Path, seed: int = 0, *, cosxl: bool = False) -> Path:
    """Save a random SDXL InstructPix2Pix pipeline (two CLIP encoders, text-time UNet)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size ids + pooled text
        cross_attention_dim=64,  # the two encoders' 32 + 32
        norm_num_groups=8,
    )
    vae = _tiny_vae(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8)
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()
    config = tiny_text_config(tokenizer)
    text_encoder = CLIPTextModel(config)
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(**{**config.to_dict(), "projection_dim": 32})
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    # A dict because diffusers' annotations reject what its docs allow (any scheduler).
    components: dict[str, Any] = {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "unet": unet,
        "scheduler": scheduler,
    }
    pipe = StableDiffusionXLInstructPix2PixPipeline(**components, add_watermarker=False)
    pipe.save_pretrained(path)
    if cosxl:
        index = json.loads((path / "model_index.json").read_text("utf-8"))
        (path / "model_index.json").write_text(json.dumps({**index, "is_cosxl_edit": True}))
    return path


def build_tiny_flux_kontext(path: Path, seed: int = 0) -> Path:
    """Save a random FLUX.1 Kontext pipeline (one double and one single block, 1-channel VAE)."""
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # the VAE's 1 latent channel in 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,  # as Kontext dev: the text guidance is an input
        axes_dims_rope=[4, 4, 8],
    )
    vae = _tiny_vae(
        block_out_channels=(4, 4),
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            **T5_SPECIAL_IDS,
        )
    )
    components: dict[str, Any] = {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": CLIPTextModel(tiny_text_config(tokenizer)),
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
    }
    FluxKontextPipeline(**components).save_pretrained(path)
    return path


QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""The chat and vision markers Qwen-Image-Edit's prompt template and Qwen2-VL's processor use."""


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Qwen2's tokenizer class over byte-level single characters (no merges), plus markers."""
    vocab = {character: i for i, character in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


def build_tiny_qwen_image_edit(path: Path, seed: int = 0) -> Path:
    """Save a random Qwen-Image-Edit pipeline: one-block transformer, tiny Qwen2.5-VL encoder.

    The VAE keeps the real 8x downscale: the pipeline encodes every input at about 1 MP (its
    own rule), which a 2x VAE would turn into tens of thousands of tokens.
    """
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in QWEN_SPECIAL_TOKENS}  # type: ignore[arg-type]
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=64 * 64),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2], "rope_type": "default"},
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_heads": 4,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
            "window_size": 28,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    components: dict[str, Any] = {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": AutoencoderKLQwenImage(
            base_dim=4,
            z_dim=4,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, False, False],
            latents_mean=[0.0] * 4,
            latents_std=[1.0] * 4,
        ),
        "text_encoder": Qwen2_5_VLForConditionalGeneration(config),
        "tokenizer": tokenizer,
        "processor": processor,
        "transformer": QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,  # the VAE's 4 channels in 2x2 patches
            out_channels=4,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            axes_dims_rope=(4, 6, 6),
        ),
    }
    QwenImageEditPipeline(**components).save_pretrained(path)
    return path


def _tiny_vae(**config: Any) -> AutoencoderKL:
    blocks = len(config["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        **config,
    )


def build_tiny_family_lora(pipeline_dir: Path, out_dir: Path, seed: int = 1) -> Path:
    """A random LoRA on the attention projections of a tiny SDXL UNet or Flux transformer."""
    torch.manual_seed(seed)
    index = json.loads((pipeline_dir / "model_index.json").read_text("utf-8"))
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=LORA_TARGET_MODULES, init_lora_weights=False
    )
    if index["_class_name"] == "QwenImageEditPipeline":
        qwen = QwenImageTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer")
        qwen.add_adapter(config)
        QwenImageEditPipeline.save_lora_weights(
            out_dir, transformer_lora_layers=get_peft_model_state_dict(qwen)
        )
        return out_dir
    if index["_class_name"] == "FluxKontextPipeline":
        transformer = FluxTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer")
        transformer.add_adapter(config)
        layers = get_peft_model_state_dict(transformer)
        FluxKontextPipeline.save_lora_weights(out_dir, transformer_lora_layers=layers)
        return out_dir
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    unet.add_adapter(config)
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionXLInstructPix2PixPipeline.save_lora_weights(
        out_dir, unet_lora_layers=unet_layers
    )
    return out_dir
