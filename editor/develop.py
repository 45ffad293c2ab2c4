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
3. The change is fitted per window as a local affine colour map from input to output (a
   guided filter whose prior is "no change"); the maps are upsampled and applied to the
   full-resolution parent, so its fine detail survives colour and lighting edits; where the fit
   fails (new objects, new edges) the plainly upsampled output takes over by a soft weight.
4. Global: that is the result. Local: it is blended over the parent by the feathered mask;
   where the mask is 0 the parent's bytes are copied untouched. The same transfer in the
   feather band keeps the parent's detail there too (no blurry halo around an edit).

`confine` then applies the user's named regions (`/keep`, `/only`): protected pixels are the
parent's bytes exactly, with a short ramp inside the editable side.

Everything heavy runs at working resolution; the full-resolution work is limited to the box
around the change and done in horizontal bands, so time and memory stay low at 24 MP. Pure
numpy + OpenCV, no per-pixel Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Names for intent (uint8 0..255 pictures and masks, float32 maps); the dtype is left open
# because OpenCV's stubs type every result as a generic integer-or-float array.
Float = NDArray[Any]
Bytes = NDArray[Any]

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
            trip's +-2 levels stay under ~1.5; 7 is three just-noticeable differences (2.3).
        open_radius: morphological opening that removes speckles (texture the VAE redraws).
        close_radius: closing that fills holes inside a changed object.
        min_area_share: components smaller than this share of the picture are dropped.
        feather_radius: the mask is grown by this radius, then blurred by it, so the change
            itself is taken fully and the transition happens in the surroundings (where the
            fitted map is close to identity, so the blend is invisible).
        global_share: a cleaned mask covering at least this share makes the edit global.
        fit_radius: window radius of the local affine colour fit that carries the change.
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
        mask: "L", the parent's size: 0 = the parent's pixel, bit-identical; 255 = fully the edit
            (all 255 for a global edit: nothing is promised untouched).
        mode: "local", "global" or "none" (no change found: `image` is the parent object
            itself, not a copy, and the mask is all 0).
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

    # 2. The mode, and the full-resolution box the edit may touch
    width, height = parent.size
    if share == 0.0:
        return Developed(parent, Image.new("L", parent.size, 0), "none")
    alpha: Bytes | None = None
    box: _Box | None = (0, 0, width, height)
    if share < options.global_share:
        alpha = feather(changed, _radius(options.feather_radius, scale))
        box = _full_res_box(alpha, parent.size)
    if box is None:
        return Developed(parent, Image.new("L", parent.size, 0), "none")

    # 3. Fit the change as local colour maps, at working resolution
    fit = fit_change(before, after, options, scale)

    # 4. Carry it onto the parent inside the box. Only the box goes to numpy and back: a
    #    12 MP PIL <-> numpy round trip alone costs ~80 ms on two cores.
    region = np.array(parent.crop(box), dtype=np.uint8)
    weights = _transfer(region, box, parent.size, fit, after, alpha)
    if weights is None:
        return Developed(Image.fromarray(region), Image.new("L", parent.size, 255), "global")
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
    binary: Bytes = np.where(distance > options.threshold, 255, 0).astype(np.uint8)
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


@dataclass(frozen=True, slots=True)
class _Fit:
    """Per working pixel: output ~= gain * input + offset (0..255), and where that fails."""

    gain: Float
    offset: Float
    structure: Bytes


def fit_change(before: Bytes, after: Bytes, options: DevelopOptions, scale: float) -> _Fit:
    """Fit the model's change as a local affine colour map per channel, at working resolution.

    A guided filter of the output with the input as guide (He et al., box-filter form). The
    usual prior pulls the gain to 0, which turns flat-at-working-resolution areas into flat
    colour and would erase the parent's fine texture there; this one pulls it to 1, so such
    areas get the low-frequency change on top of the parent's own detail, while wherever the
    working image shows texture the data decides (a darkening scales it, a flat new colour
    mostly removes it). Gains and offsets are smooth, so bilinear upsampling suffices. Where
    the fit's residual is large the model drew new structure (objects, edges): `structure`
    (0..255) says how much of the plainly upsampled output to use there instead.
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

    error = np.abs(gain * guide + offset - target)
    # Channel-wise maximum; numpy's reduce over the last axis is ~5x slower on this layout.
    residual = np.maximum(np.maximum(error[..., 0], error[..., 1]), error[..., 2]) * 255.0
    span = max(options.structure_high - options.structure_low, 1e-6)
    weight = np.clip((residual - options.structure_low) / span, 0.0, 1.0)
    feather_radius = _radius(options.feather_radius, scale)
    weight = cv2.dilate(weight, _disk(feather_radius))
    size = 2 * feather_radius + 1
    weight = cv2.GaussianBlur(weight, (size, size), feather_radius / 2.0)
    structure = np.rint(weight * 255.0).astype(np.uint8)
    return _Fit(gain, offset * np.float32(255.0), structure)


def _transfer(
    region: Bytes,
    box: _Box,
    size: tuple[int, int],
    fit: _Fit,
    after: Bytes,
    alpha: Bytes | None,
) -> Bytes | None:
    """Apply the fitted maps to the parent's `region` (the crop `box`), band by band, in place.

    With an `alpha` (local mode) the result is blended over the parent by it, the parent's
    bytes kept exactly where the upsampled alpha is 0, and the full-resolution alpha of the
    region is returned; without one (global mode) the whole region is the edit.
    Bicubic for the output where structure changed, not Lanczos: it is feathered in anyway and
    remaps at half the cost; resampling straight to uint8 saturates its overshoot.
    """
    full_shape = (size[1], size[0])
    x0, y0, x1, y1 = box
    weights = None if alpha is None else np.zeros(region.shape[:2], dtype=np.uint8)
    has_structure = bool(fit.structure.any())
    for top in range(y0, y1, BAND_ROWS):
        bottom = min(y1, top + BAND_ROWS)
        window = (x0, top, x1, bottom)
        rows = slice(top - y0, bottom - y0)
        weight = None
        if alpha is not None and weights is not None:
            weight = _resample(alpha, full_shape, window, cv2.INTER_LINEAR)
            if not weight.any():
                continue  # nothing to do: the parent's bytes stay
            weights[rows] = weight
        original = region[rows]
        # Two 3-channel warps: OpenCV's fast path stops at 4 channels (6 are ~4x slower).
        gains = _resample(fit.gain, full_shape, window, cv2.INTER_LINEAR)
        offsets = _resample(fit.offset, full_shape, window, cv2.INTER_LINEAR)
        values = cv2.multiply(original, gains, dtype=cv2.CV_32F)
        share = (
            _resample(fit.structure, full_shape, window, cv2.INTER_LINEAR)
            if has_structure
            else None
        )
        if weight is None and (share is None or not share.any()):
            # OpenCV's saturating add rounds and clamps to uint8 in one SIMD pass.
            region[rows] = cv2.add(values, offsets, dtype=cv2.CV_8U)
            continue
        values += offsets
        if share is not None and share.any():
            edit = _resample(after, full_shape, window, cv2.INTER_CUBIC).astype(np.float32)
            values += (share[..., None].astype(np.float32) / 255.0) * (edit - values)
        if weight is None:
            region[rows] = _to_bytes(values)
            continue
        parent = original.astype(np.float32)
        parent += (weight[..., None].astype(np.float32) / 255.0) * (values - parent)
        region[rows] = np.where(weight[..., None] > 0, _to_bytes(parent), original)
    return weights


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
    source: NDArray[Any],
    full_shape: tuple[int, ...],
    window: _Box,
    interpolation: int,
) -> NDArray[Any]:
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


def confine(
    parent: Image.Image,
    edited: Image.Image,
    keep: Image.Image | None = None,
    only: Image.Image | None = None,
) -> Image.Image:
    """Apply `/keep` and `/only` masks to an edit of `parent` (both RGB, the same size).

    Pixels inside `keep`, and pixels outside `only`, are the parent's bytes exactly; where both
    apply keep wins (a kept pixel is never editable). The edit fades in over a short ramp inside
    the editable part (its distance to the protected part, 2 px at 768 px, scaled with the
    photo), so there is no hard seam and the protected side stays bit-identical. Masks are "L",
    0 outside and 255 inside, the parent's size; no mask returns `edited` unchanged.
    """
    if keep is None and only is None:
        return edited
    if edited.size != parent.size:
        raise ValueError(f"edited {edited.size} != parent {parent.size}")
    for name, mask in (("keep", keep), ("only", only)):
        if mask is not None and mask.size != parent.size:
            raise ValueError(f"{name} mask {mask.size} != parent {parent.size}")
    allowed = np.full((parent.size[1], parent.size[0]), 255, dtype=np.uint8)
    if only is not None:
        cv2.threshold(np.asarray(only.convert("L")), 0, 255, cv2.THRESH_BINARY, dst=allowed)
    if keep is not None:
        allowed[np.asarray(keep.convert("L")) > 0] = 0
    if not allowed.any():
        return parent
    ramp = 2 * _radius(2.0, max(parent.size) / REFERENCE_SIDE)
    alpha = _ramp_inside(allowed, ramp)
    before = np.asarray(parent, dtype=np.uint8)
    result = np.array(edited, dtype=np.uint8)
    np.copyto(result, before, where=(allowed == 0)[..., None])
    rows, columns = np.nonzero((alpha < 255) & (allowed > 0))  # the ramp: a thin band
    if rows.size:
        weight = (alpha[rows, columns].astype(np.float32) / 255.0)[:, None]
        low = before[rows, columns].astype(np.float32)
        high = result[rows, columns].astype(np.float32)
        result[rows, columns] = _to_bytes(low + weight * (high - low))
    return Image.fromarray(result)


def _ramp_inside(allowed: Bytes, ramp: int) -> Bytes:
    """Weight of the edit (0..255) by distance to the nearest protected pixel: 0 next to it,
    rising linearly to 255 at `ramp` px.

    Only the ramp's shape depends on it (the protected side is copied from the parent by the
    exact mask), so it is computed on cells of ~ramp/4 px, where any protected pixel makes the
    cell protected, and upsampled as bytes: a full-resolution float distance transform costs
    several times more at 24 MP.
    """
    cell = max(1, ramp // 4)
    height, width = allowed.shape
    small = allowed
    if cell > 1:
        small_size = (max(1, width // cell), max(1, height // cell))
        # The area average is 255 only where every pixel of the cell is allowed.
        small = cv2.resize(allowed, small_size, interpolation=cv2.INTER_AREA)
        small = np.where(small == 255, 255, 0).astype(np.uint8)
    distance = cv2.distanceTransform(small, cv2.DIST_L2, 3) * np.float32(cell * 255.0 / ramp)
    weights = np.minimum(distance, 255.0).astype(np.uint8)
    if cell == 1:
        return weights
    return cv2.resize(weights, (width, height), interpolation=cv2.INTER_LINEAR)
