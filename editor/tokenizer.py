"""A byte-level CLIP tokenizer that needs no download, for models built with random weights.

The full-size architecture benchmark and the tiny test models both use it: it encodes any text
(one token per byte) with CLIP's own tokenizer class, so the real text path runs unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

MAX_POSITION_EMBEDDINGS = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters, the alphabet of CLIP's byte-level BPE.

    transformers 5 no longer exports it, and a vocabulary of exactly these characters lets the
    tiny tokenizer encode any text without merges.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codepoints = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codepoints), strict=True))


def build_byte_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer with one token per byte (plus its end-of-word form) and no merges.

    Its files are written to `folder`, which may be deleted afterwards (they are read at once).
    """
    characters = list(bytes_to_unicode().values())
    tokens = [*characters, *(c + "</w>" for c in characters), "<|startoftext|>", "<|endoftext|>"]
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(tokens)}), "utf-8")
    merges_file.write_text("#version: 0.2\n", "utf-8")
    return CLIPTokenizer(
        vocab=str(vocab_file), merges=str(merges_file), model_max_length=MAX_POSITION_EMBEDDINGS
    )
