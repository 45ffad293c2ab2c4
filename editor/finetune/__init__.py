"""The product fine-tuning pipeline: captions, paired images, LoRA training, evaluation.

One module per job, each driven by a `pix2chat` command (bot/commands/finetune.py):

- `captions`: a seeded synthesizer of (input caption, edit instruction, output caption) triples.
- `prompt2prompt` and `pairs`: paired images from the captions, kept when CLIP agrees.
- `training`: LoRA (or full) fine-tuning of the InstructPix2Pix UNet.
- `metrics` and `evaluation`: MagicBrush-style measures, base model against the adapter.

Heavy libraries (torch, diffusers, datasets) are imported by the modules that need them, never
here, so `pix2chat dataset captions` starts instantly.
"""
