"""Provenance of delivered files: a signed C2PA manifest plus an invisible watermark.

The manifest (c2pa-python) says the picture was made with AI: the actions, the software and,
if allowed, the instruction. It lives in the PNG's metadata, so it is lost when a platform
recompresses the picture; the watermark (invisible-watermark, DWT-DCT-SVD in the luma) lives in
the pixels and survives JPEG recompression. `verify` reads both back.

Signing needs a certificate chain. Without one configured, `ensure_credentials` makes a local
CA and a signing certificate once and keeps them: the signature then proves the file is
unchanged since this server signed it, but no C2PA validator trusts that CA, so readers show
the manifest as "untrusted" (an operator who needs trust configures a certificate from a CA on
the C2PA trust list).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from editor.finishing.errors import FinishingNotInstalled

log = logging.getLogger(__name__)

SOFTWARE = "pix2chat"
AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
WATERMARK = b"p2c\x01"
"""The 32-bit payload: pix2chat, format 1."""
WATERMARK_BITS = len(WATERMARK) * 8
MAX_BIT_ERRORS = 3
"""Bits a read may get wrong and still count (a random image matches with p ~ 1e-6)."""
MIN_WATERMARK_SIDE = 256
"""The DWT-DCT-SVD embedding needs room for its blocks; smaller images get none."""
WATERMARK_METHOD = "dwtDctSvd"
"""Survives JPEG quality 85 (dwtDct, faster, does not: docs/BENCHMARKS.md)."""
WATERMARK_SCALES = [0, 54, 54]
"""Quantisation steps per YUV channel: both chroma channels, stronger than the library's
default (0, 36, 0), which lost the mark in a quarter of flat studio shots after JPEG 85; the
PSNR stays about 40 dB."""


@dataclass(frozen=True, slots=True)
class Step:
    """One AI operation in a version's history, for the manifest."""

    action: str
    """A C2PA action: c2pa.edited, c2pa.resized ..."""
    description: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """A PEM certificate chain (signer first) and its PEM private key."""

    chain: bytes
    key: bytes
    self_signed: bool = False


@dataclass(frozen=True, slots=True)
class Findings:
    """What `verify` read back from a file."""

    manifest: dict[str, Any] | None
    actions: list[str] = field(default_factory=list)
    signer: str | None = None
    validation: list[str] = field(default_factory=list)
    watermark: bool = False
    watermark_errors: int | None = None


# ----- credentials ---------------------------------------------------------------------------


def ensure_credentials(cert_path: Path, key_path: Path) -> Credentials:
    """The configured chain and key; made once (a local CA and a signer) when neither exists."""
    if cert_path.exists() and key_path.exists():
        return Credentials(cert_path.read_bytes(), key_path.read_bytes())
    if cert_path.exists() or key_path.exists():
        missing = key_path if cert_path.exists() else cert_path
        raise FileNotFoundError(f"{missing} is missing (a certificate needs its key)")
    chain, key = make_self_signed()
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    cert_path.write_bytes(chain)
    log.warning(
        "made a self-signed C2PA signing certificate (%s): manifests will read as untrusted",
        cert_path,
    )
    return Credentials(chain, key, self_signed=True)


def make_self_signed(days: int = 3650) -> tuple[bytes, bytes]:
    """A local CA and an ES256 signing certificate it issued: (PEM chain, PEM key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, SOFTWARE),
            ]
        )

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not sign,
            crl_sign=not sign,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"{SOFTWARE} local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(f"{SOFTWARE} signer"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


# ----- watermark -----------------------------------------------------------------------------


def _imwatermark() -> Any:
    try:
        import imwatermark
    except ImportError as error:
        raise FinishingNotInstalled(missing=str(error)) from error
    return imwatermark


def embed_watermark(image: Image.Image) -> Image.Image:
    """`image` with the invisible mark in its pixels (alpha kept); tiny images unchanged."""
    if min(image.size) < MIN_WATERMARK_SIDE:
        return image
    imwatermark = _imwatermark()
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bytes", WATERMARK)
    marked = Image.fromarray(
        np.ascontiguousarray(
            encoder.encode(bgr, WATERMARK_METHOD, scales=WATERMARK_SCALES)[:, :, ::-1]
        )
    )
    if alpha is not None:
        marked.putalpha(alpha)
    return marked


def watermark_errors(image: Image.Image) -> int | None:
    """Bits of the mark read wrong (0 = exact); None when the image is too small to hold one."""
    if min(image.size) < MIN_WATERMARK_SIDE:
        return None
    imwatermark = _imwatermark()
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    decoder = imwatermark.WatermarkDecoder("bits", WATERMARK_BITS)
    bits = [int(bool(b)) for b in decoder.decode(bgr, WATERMARK_METHOD, scales=WATERMARK_SCALES)]
    expected = [(byte >> (7 - i)) & 1 for byte in WATERMARK for i in range(8)]
    return sum(a != b for a, b in zip(bits, expected, strict=True))


def has_watermark(image: Image.Image) -> bool:
    errors = watermark_errors(image)
    return errors is not None and errors <= MAX_BIT_ERRORS


# ----- manifest ------------------------------------------------------------------------------


def manifest_for(steps: Sequence[Step], title: str) -> dict[str, Any]:
    """A C2PA manifest: created by trained algorithmic media, then each AI step."""
    agent = {"name": SOFTWARE}
    actions: list[dict[str, Any]] = [
        {"action": "c2pa.created", "digitalSourceType": AI_SOURCE, "softwareAgent": agent}
    ]
    actions += [
        {
            "action": step.action,
            "digitalSourceType": AI_SOURCE,
            "softwareAgent": agent,
            "parameters": {"description": step.description},
        }
        for step in steps
    ]
    return {
        "claim_generator_info": [{"name": SOFTWARE}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
    }


class Provenance:
    """Stamps delivered PNGs: watermark in the pixels, then a signed C2PA manifest."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def stamp(self, png: bytes, steps: Sequence[Step], title: str) -> bytes:
        """`png` watermarked and signed (a PNG again)."""
        with Image.open(io.BytesIO(png)) as decoded:
            image = decoded.copy()
        marked = embed_watermark(image)
        source = io.BytesIO()
        marked.save(source, "PNG", compress_level=1)
        return self.sign(source.getvalue(), steps, title)

    def sign(self, png: bytes, steps: Sequence[Step], title: str) -> bytes:
        """`png` with a signed C2PA manifest of `steps` (pixels untouched)."""
        try:
            import c2pa
        except ImportError as error:
            raise FinishingNotInstalled(missing=str(error)) from error
        source = io.BytesIO(png)
        info = c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ES256, self.credentials.chain, self.credentials.key, None
        )
        signed = io.BytesIO()
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder(manifest_for(steps, title)) as builder,
        ):
            builder.sign(signer, "image/png", source, signed)
        return signed.getvalue()


def read_manifest(data: bytes, mime: str) -> dict[str, Any] | None:
    """The C2PA store of a file as JSON, or None without one."""
    try:
        import c2pa
    except ImportError as error:
        raise FinishingNotInstalled(missing=str(error)) from error
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
    except c2pa.C2paError as error:
        log.warning("C2PA data present but unreadable: %s", error)
        return None
    if reader is None:
        return None
    with reader:
        store: dict[str, Any] = json.loads(reader.json())
    return store


def verify(data: bytes) -> Findings:
    """What a file carries: its manifest's actions and signer, and whether the mark is there."""
    with Image.open(io.BytesIO(data)) as decoded:
        mime = Image.MIME.get(decoded.format or "", "image/png")
        image = decoded.copy()
    errors = watermark_errors(image)
    store = read_manifest(data, mime)
    if store is None:
        return Findings(
            None, watermark=errors is not None and errors <= MAX_BIT_ERRORS, watermark_errors=errors
        )
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    actions: list[str] = []
    for assertion in active.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                description = (action.get("parameters") or {}).get("description")
                actions.append(action["action"] + (f": {description}" if description else ""))
    signer = (active.get("signature_info") or {}).get("common_name")
    validation = [status.get("code", "") for status in store.get("validation_status", [])]
    return Findings(
        store,
        actions,
        signer,
        validation,
        watermark=errors is not None and errors <= MAX_BIT_ERRORS,
        watermark_errors=errors,
    )
