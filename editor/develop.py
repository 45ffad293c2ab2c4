"""The develop step: carry a working-resolution edit onto the full-resolution parent.

The model sees the parent fitted to at most 768 px and regenerates every pixel through the VAE,
which adds a low-amplitude error everywhere. Chaining those outputs would drift the whole
picture and shrink it to the working size. `develop` instead finds what the model really changed
and applies only that to the parent at the parent's own size:

1. A change mask at working resolution: CIELAB distance between the model's input and output,
   thresholded well above the VAE's noise, cleaned by morphology, tiny islands dropped, then
   feathered into a soft alpha that is exactly 0 a little outside the change.
2. The mode: "none" (nothing changed: the parent itself), "global" (the change covers most of
   the picture) or "local".
3. Local: inside the feathered mask the upsampled model output is blended over the parent;
   where the mask is 0 the parent's bytes are copied untouched.
4. Global: the change is fitted per window as a local affine colour map from input to output
   (a guided filter whose prior is "no change"), the map is upsampled and applied to the
   full-resolution parent, so its fine detail survives colour and lighting edits; where the fit
   fails (new objects, new edges) the plainly upsampled output takes over by a soft weight.

Everything heavy runs at working resolution; the full-resolution work is limited to the box
around the change and done in horizontal bands, so time and memory stay low at 24 MP. Pure
numpy + OpenCV, no per-pixel Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

Float = NDArray[np.float32]
Bytes = NDArray[np.uint8]

REFERENCE_SIDE = 768
"""Long side (px) at which the radii in `DevelopOptions` hold; other sizes scale them."""

BAND_ROWS = 256
"""Full-resolution rows processed per pass: bounds the float32 temporaries (~12 MB per band at
4000 px wide) and keeps them in cache, instead of several whole-picture float copies."""


@dataclass(frozen=True, slots=True)
class DevelopOptions:
    """How a change is found and carried over.

    Radii are in pixels at a `REFERENCE_SIDE` working image and scale with the actual working
    size, so the same options suit a 512 and a 768 px model run.

    Attributes:
        threshold: CIE76 delta E above which a working pixel counts as changed. A VAE round
            trip's +-2 levels stay under ~1.5; 7 is a just-noticeable difference with margin.
        open_radius: morphological opening that removes speckles (texture the VAE redraws).
        close_radius: closing that fills holes inside a changed object.
        min_area_share: components smaller than this share of the picture are dropped.
        feather_radius: the mask is grown by this radius, then blurred by it, so the change
            itself is taken fully and the transition happens in the surroundings (where the
            model output is the parent plus noise, so the blend is invisible).
        global_share: a cleaned mask covering at least this share makes the edit global.
        fit_radius: window radius of the local affine colour fit of the global path.
        fit_eps: regulariser of that fit towards "no change" (variance on 0..1 values): larger
            keeps more of the parent's contrast, smaller follows the output's local contrast.
            1e-4 is a little above the VAE noise ((2.5 / 255) ** 2): the data decides wherever
            working resolution shows texture, the prior only where it shows none.
        structure_low: residual of the fit (levels, max over channels) below which the fitted
            map is trusted entirely.
        structure_high: residual above which the plainly upsampled output is used instead.
    """

    threshold: float = 7.0
    open_radius: float = 2.0
    close_radius: float = 5.0
    min_area_share: float = 0.0002
    feather_radius: float = 4.0
    global_share: float = 0.6
    fit_radius: float = 8.0
    fit_eps: float = 0.0001
    structure_low: float = 12.0
    structure_high: float = 40.0


@dataclass(frozen=True, slots=True)
class Developed:
    """The developed result.

    Attributes:
        image: RGB, exactly the parent's size.
        mask: "L", the parent's size: 0 = the parent's pixel, bit-identical; 255 = fully the edit.
        mode: "local", "global" or "none" (no change found: `image` is the parent itself).
    """

    image: Image.Image
    mask: Image.Image
    mode: str


def develop(
    parent: Image.Image,
    model_input: Image.Image,
    model_output: Image.Image,
    options: DevelopOptions = DevelopOptions(),
) -> Developed:
    """Develop a working-resolution model result onto the full-resolution parent.

    Args:
        parent: the full-resolution RGB parent.
        model_input: exactly what the model was given (the parent fitted to the working size).
        model_output: the model's RGB result, the same size as `model_input`.
        options: thresholds and radii (see `DevelopOptions`).

    Returns:
        The developed image, its mask and the mode. Pure function, no I/O.

    Raises:
        ValueError: an image is not RGB, or the output's size differs from the input's.
    """
    # 0. Check inputs
    for name, image in (("parent", parent), ("model_input", model_input), ("output", model_output)):
        if image.mode != "RGB":
            raise ValueError(f"{name} must be RGB, got {image.mode}")
    if model_output.size != model_input.size:
        raise ValueError(f"model output {model_output.size} != model input {model_input.size}")

    # 1. The change at working resolution
    before = np.asarray(model_input, dtype=np.uint8)
    after = np.asarray(model_output, dtype=np.uint8)
    scale = max(model_input.size) / REFERENCE_SIDE
    changed = change_mask(before, after, options, scale)
    share = float(np.count_nonzero(changed)) / changed.size

    # 2. The mode
    if share == 0.0:
        return Developed(parent, Image.new("L", parent.size, 0), "none")
    if share >= options.global_share:
        base = np.array(parent, dtype=np.uint8)  # writable copy: becomes the result
        _develop_global(base, before, after, options, scale)
        return Developed(Image.fromarray(base), Image.new("L", parent.size, 255), "global")

    # 3. Local: blend only inside the box around the feathered mask, copy the parent elsewhere
    alpha = feather(changed, _radius(options.feather_radius, scale))
    box = _full_res_box(alpha, parent.size)
    if box is None:
        return Developed(parent, Image.new("L", parent.size, 0), "none")
    # Only the box is converted to numpy and back: a 12 MP PIL <-> numpy round trip alone
    # costs ~80 ms on two cores, most of the budget.
    region = np.array(parent.crop(box), dtype=np.uint8)
    weights = _develop_local(region, alpha, after, parent.size, box)
    image, mask = parent.copy(), Image.new("L", parent.size, 0)
    image.paste(Image.fromarray(region), box[:2])
    mask.paste(Image.fromarray(weights), box[:2])
    return Developed(image, mask, "local")


def change_mask(before: Bytes, after: Bytes, options: DevelopOptions, scale: float = 1.0) -> Bytes:
    """Binary mask (0/255) of the pixels the model really changed, at working resolution.

    CIELAB makes the threshold perceptual (a dark-blue change counts like a yellow one); the
    opening removes the isolated pixels where the VAE redrew texture, the closing fills holes
    in a changed object, and components under `min_area_share` are dropped as residual noise.
    """
    distance = delta_e(before, after)
    binary = np.where(distance > options.threshold, 255, 0).astype(np.uint8)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, _disk(_radius(options.open_radius, scale)))
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, _disk(_radius(options.close_radius, scale)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = options.min_area_share * binary.size
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_area)
    small = small[small > 0]  # label 0 is the background
    if count > 1 and small.size:
        binary[np.isin(labels, small)] = 0
    return binary


def delta_e(before: Bytes, after: Bytes) -> Float:
    """Per-pixel CIE76 distance; OpenCV's float conversion gives L in 0..100, a/b in +-127."""
    lab_before = cv2.cvtColor(before.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab_after = cv2.cvtColor(after.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    difference = lab_after - lab_before
    return np.sqrt(np.einsum("ijk,ijk->ij", difference, difference)).astype(np.float32)


def feather(binary: Bytes, radius: int) -> Bytes:
    """Soft alpha (0..255) that is 255 on the mask and exactly 0 beyond 2 * radius outside it.

    Grown first, then blurred with a kernel truncated at the same radius, so the change itself
    is taken fully and the blur cannot leak further (OpenCV's Gaussian kernel has finite support;
    rounding to uint8 clamps the faint tail to 0).
    """
    grown = cv2.dilate(binary, _disk(radius))
    size = 2 * radius + 1
    return cv2.GaussianBlur(grown, (size, size), sigmaX=radius / 2.0, sigmaY=radius / 2.0)


def _develop_local(
    region: Bytes, alpha: Bytes, after: Bytes, size: tuple[int, int], box: _Box
) -> Bytes:
    """Blend the bicubic-upsampled output over the parent's `region` (the crop `box`), in place.

    Returns the full-resolution alpha (0..255) of the region. Bicubic, not Lanczos: within the
    feather both are blended anyway and bicubic remaps at half the cost; resampling straight to
    uint8 saturates its overshoot. Where the upsampled alpha is 0 the parent's bytes are kept.
    """
    full_shape = (size[1], size[0])
    x0, y0, x1, y1 = box
    weights = np.empty(region.shape[:2], dtype=np.uint8)
    for top in range(y0, y1, BAND_ROWS):
        bottom = min(y1, top + BAND_ROWS)
        window = (x0, top, x1, bottom)
        rows = slice(top - y0, bottom - y0)
        weight = _resample(alpha, full_shape, window, cv2.INTER_LINEAR)
        weights[rows] = weight
        edit = _resample(after, full_shape, window, cv2.INTER_CUBIC).astype(np.float32)
        original = region[rows]
        blended = original.astype(np.float32)
        blended += (weight[..., None].astype(np.float32) / 255.0) * (edit - blended)
        region[rows] = np.where(weight[..., None] > 0, _to_bytes(blended), original)
    return weights


def _develop_global(
    base: Bytes, before: Bytes, after: Bytes, options: DevelopOptions, scale: float
) -> None:
    """Apply the fitted local affine colour map to the full-resolution `base`, in place.

    Per channel and window, output ~= gain * input + offset (a guided filter of the output with
    the input as guide, He et al., box-filter form). The usual prior pulls the gain to 0, which
    turns flat-at-working-resolution areas into flat colour and would erase the parent's fine
    texture there; this one pulls it to 1, so such areas get the low-frequency change added to
    the parent's own detail. Gains and offsets are smooth, so bilinear upsampling is enough.
    Where the fit's residual is large the model drew new structure: the bicubic-upsampled
    output is blended in by a soft weight.
    """
    guide = before.astype(np.float32) / 255.0
    target = after.astype(np.float32) / 255.0
    radius = _radius(options.fit_radius, scale)
    window = (2 * radius + 1, 2 * radius + 1)

    def box(values: Float) -> Float:
        return cv2.boxFilter(values, -1, window, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_target = box(guide), box(target)
    variance = box(guide * guide) - mean_guide * mean_guide
    covariance = box(guide * target) - mean_guide * mean_target
    eps = np.float32(options.fit_eps)
    gain = (covariance + eps) / (variance + eps)
    offset = mean_target - gain * mean_guide
    gain, offset = box(gain), box(offset)

    fitted = gain * guide + offset
    error = np.abs(fitted - target)
    # Channel-wise maximum; numpy's reduce over the last axis is ~5x slower on this layout.
    residual = np.maximum(np.maximum(error[..., 0], error[..., 1]), error[..., 2]) * 255.0
    span = max(options.structure_high - options.structure_low, 1e-6)
    weight = np.clip((residual - options.structure_low) / span, 0.0, 1.0)
    feather_radius = _radius(options.feather_radius, scale)
    weight = cv2.dilate(weight, _disk(feather_radius))
    size = 2 * feather_radius + 1
    weight = cv2.GaussianBlur(weight, (size, size), feather_radius / 2.0)
    structure = np.rint(weight * 255.0).astype(np.uint8)
    has_structure = bool(structure.any())
    offset = offset * np.float32(255.0)  # the full-resolution pass works on 0..255 values

    height, width = base.shape[:2]
    for top in range(0, height, BAND_ROWS):
        bottom = min(height, top + BAND_ROWS)
        band = (0, top, width, bottom)
        # Two 3-channel warps: OpenCV's fast path stops at 4 channels (6 are ~4x slower).
        gains = _resample(gain, base.shape, band, cv2.INTER_LINEAR)
        offsets = _resample(offset, base.shape, band, cv2.INTER_LINEAR)
        values = cv2.multiply(base[top:bottom], gains, dtype=cv2.CV_32F)
        share = None
        if has_structure:
            share = _resample(structure, base.shape, band, cv2.INTER_LINEAR)
        if share is None or not share.any():
            # OpenCV's saturating add rounds and clamps to uint8 in one SIMD pass.
            base[top:bottom] = cv2.add(values, offsets, dtype=cv2.CV_8U)
            continue
        values += offsets
        edit = _resample(after, base.shape, band, cv2.INTER_CUBIC).astype(np.float32)
        values += (share[..., None].astype(np.float32) / 255.0) * (edit - values)
        base[top:bottom] = _to_bytes(values)


_Box = tuple[int, int, int, int]


def _full_res_box(alpha: Bytes, size: tuple[int, int]) -> _Box | None:
    """Full-resolution box (x0, y0, x1, y1) holding every pixel the upsampled alpha can touch.

    Taken from the working-resolution alpha plus one working pixel of margin, since bilinear
    interpolation reaches one source pixel beyond the last non-zero one.
    """
    rows = np.flatnonzero(alpha.any(axis=1))
    columns = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return None
    width, height = size
    sx, sy = width / alpha.shape[1], height / alpha.shape[0]
    x0 = max(0, math.floor((columns[0] - 1) * sx))
    x1 = min(width, math.ceil((columns[-1] + 2) * sx))
    y0 = max(0, math.floor((rows[0] - 1) * sy))
    y1 = min(height, math.ceil((rows[-1] + 2) * sy))
    return x0, y0, x1, y1


def _resample(
    source: NDArray[np.generic],
    full_shape: tuple[int, ...],
    window: _Box,
    interpolation: int,
) -> NDArray[np.generic]:
    """The part `window` of `source` resized to `full_shape`, exactly as cv2.resize would place it.

    An inverse affine warp with resize's pixel-centre convention (src = (dst + 0.5) * s - 0.5),
    so bands and boxes can be upsampled separately and still line up seamlessly.
    """
    x0, y0, x1, y1 = window
    sx = source.shape[1] / full_shape[1]
    sy = source.shape[0] / full_shape[0]
    matrix = np.array(
        [[sx, 0.0, sx * (x0 + 0.5) - 0.5], [0.0, sy, sy * (y0 + 0.5) - 0.5]], dtype=np.float64
    )
    return cv2.warpAffine(
        source,
        matrix,
        (x1 - x0, y1 - y0),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _to_bytes(values: Float) -> Bytes:
    """Round half up and clamp to 0..255 (bicubic overshoots; gains can push past white)."""
    np.clip(values, 0.0, 255.0, out=values)
    values += 0.5
    return values.astype(np.uint8)


def _radius(radius: float, scale: float) -> int:
    """A reference-size radius at the actual working scale, at least one pixel."""
    return max(1, round(radius * scale))


def _disk(radius: int) -> Bytes:
    """Elliptical structuring element of the given radius."""
    size = 2 * radius + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
