"""`pix2chat verify IMAGE`: what provenance a file carries (C2PA manifest, watermark)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from editor.finishing.errors import EXTRA, FinishingNotInstalled

NOT_INSTALLED = 3
NOTHING_FOUND = 1


def verify_command(path: Path, echo: Callable[[str], None]) -> int:
    """Print the manifest's actions and signer and whether the watermark is there.

    Exit status 0 when either is found, 1 when neither, 2 for an unreadable file, 3 without
    the finishing extra.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        echo(f"Cannot read {path}: {error.strerror or error}")
        return 2
    try:
        from editor.finishing.provenance import verify

        findings = verify(data)
    except FinishingNotInstalled as error:
        echo(
            f"Verifying needs the {EXTRA} extra: pip install 'pix2chat[{EXTRA}]' ({error.args_for_message.get('missing')})"
        )
        return NOT_INSTALLED
    except OSError as error:  # PIL: not an image
        echo(f"{path} is not an image I can read: {error}")
        return 2
    if findings.manifest is None:
        echo("C2PA manifest: none")
    else:
        echo(f"C2PA manifest: signed by {findings.signer or 'unknown'}")
        for action in findings.actions:
            echo(f"  action: {action}")
        if findings.validation:
            echo(f"  validation: {', '.join(findings.validation)}")
            if "signingCredential.untrusted" in findings.validation:
                echo(
                    "  (a self-signed certificate: the file is intact, the signer not on a trust list)"
                )
    if findings.watermark_errors is None:
        echo("Watermark: image too small to carry one")
    elif findings.watermark:
        echo(f"Watermark: found ({findings.watermark_errors} of 32 bits differ)")
    else:
        echo("Watermark: not found")
    return 0 if findings.manifest is not None or findings.watermark else NOTHING_FOUND
