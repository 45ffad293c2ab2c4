"""Progress previews from intermediate latents, decoded by a tiny autoencoder (TAESD).

The full SD VAE decoder costs about as much as several UNet steps at 512 px; TAESD decodes the
same latents roughly a hundred times cheaper, blurrier, which is what a progress preview needs.
Previews never feed back into the denoising loop, so the final picture is unchanged.
"""

from __future__ import annotations

import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from PIL import Image

from editor.base import PreviewCallback

__all__ = ["PreviewCallback", "TinyDecoder"]


class TinyDecoder:
    """Turns a batch of UNet-space latents into small-effort RGB previews.

    Args:
        decoder: an `AutoencoderTiny` on the pipeline's device and dtype. TAESD works on the
            latents as the UNet sees them (its scaling factor is 1), so no rescaling is needed.
    """

    def __init__(self, decoder: AutoencoderTiny) -> None:
        self.decoder = decoder
        self._processor = VaeImageProcessor(vae_scale_factor=8)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        scale = float(self.decoder.config["scaling_factor"])
        latents = latents.to(dtype=self.decoder.dtype)
        decoded = self.decoder.decode(latents / scale, return_dict=False)[0]
        images = self._processor.postprocess(decoded.float().clamp(-1, 1), output_type="pil")
        assert isinstance(images, list)
        return [image.convert("RGB") for image in images]
