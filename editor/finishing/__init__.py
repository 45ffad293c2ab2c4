"""Finishing tools run on a finished version: upscaling, cut-outs, white backgrounds, and the
provenance (C2PA manifest and invisible watermark) of delivered files."""
