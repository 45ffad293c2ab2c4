"""Where LoRA adapters attach in the InstructPix2Pix UNet: the attention projections."""

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
