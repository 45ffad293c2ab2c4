"""`pix2chat recipe apply`: results, the report, resuming after a kill, and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from bot.commands.recipe import collect, output_names
from editor.finishing.provenance import verify
from tests.bot.test_cli import base_env

TIMEOUT_S = 120


def _recipe(path: Path, steps: int = 2) -> Path:
    step = {
        "instruction": "make it night",
        "params": {
            "num_inference_steps": 2,
            "guidance_scale": 7.5,
            "image_guidance_scale": 1.5,
            "resolution": 256,
        },
    }
    document = {
        "format": "pix2chat.recipe",
        "name": "night",
        "steps": [dict(step, instruction=f"step {n}") for n in range(1, steps + 1)],
    }
    path.write_text(json.dumps(document))
    return path


def _photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"item{index:02d}.jpg"
        Image.new("RGB", (320 + index, 200), (index * 9, 90, 40)).save(path)
        paths.append(path)
    return paths


def _run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "recipe", "apply", *args],
        cwd=tmp_path,
        env=base_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=TIMEOUT_S)
    assert "Traceback" not in out + err, err
    return process.returncode, out + err


def _report(out: Path) -> list[dict[str, str]]:
    with (out / "report.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_applies_every_step_to_every_photo_at_full_size(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "night.json")
    photos = _photos(tmp_path / "shop", 3)
    (tmp_path / "shop" / "readme.txt").write_text("not a photo, and not picked from a folder")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    status, output = _finish(
        _run(tmp_path, str(recipe), "shop", "broken.jpg", "-o", "out", "--null-editor")
    )
    assert status == 1, output  # one photo failed
    assert "3 photo(s) done, 1 failed" in output
    out = tmp_path / "out"
    for index, photo in enumerate(photos):
        with Image.open(out / f"{photo.stem}.png") as result:
            assert result.format == "PNG" and result.size == (320 + index, 200)
    # A catalogue export is a delivered file: it says it was edited with AI (C2PA).
    findings = verify((out / f"{photos[0].stem}.png").read_bytes())
    assert findings.manifest is not None
    assert sum(action.startswith("c2pa.edited") for action in findings.actions) == 2  # 2 steps
    rows = _report(out)
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 6 and {r["step"] for r in done} == {"1", "2"}
    assert all(r["seed"] and float(r["seconds"]) >= 0 for r in done)
    [skipped] = [r for r in rows if r["photo"] == "broken.jpg"]
    assert skipped["status"] == "skipped" and "isn't a photo" in skipped["error"]


def test_a_killed_run_resumes_without_redoing_finished_photos(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "night.json", steps=3)
    _photos(tmp_path / "shop", 6)
    out = tmp_path / "out"
    args = (str(recipe), "shop", "-o", "out", "--null-editor", "--step-delay-ms", "60")
    first = _run(tmp_path, *args)
    deadline = time.monotonic() + TIMEOUT_S
    while len(list(out.glob("*.png"))) < 2:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=TIMEOUT_S)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert 2 <= len(finished) < 6

    status, output = _finish(_run(tmp_path, *args))
    assert status == 0, output
    assert f"{len(finished)} already done earlier" in output
    assert len(list(out.glob("*.png"))) == 6
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    rows = _report(out)
    per_photo: dict[str, list[str]] = {}
    for row in rows:
        per_photo.setdefault(row["photo"], []).append(row["step"])
    assert len(per_photo) == 6
    assert all(steps == ["1", "2", "3"] for steps in per_photo.values()), per_photo
    assert not list(out.glob(".*.partial"))


def test_bad_input_is_one_line_and_status_2(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "night.json")
    status, output = _finish(_run(tmp_path, str(recipe), "missing", "-o", "out", "--null-editor"))
    assert status == 2 and "No such file or folder: missing" in output
    (tmp_path / "bad.json").write_text('{"name": "x", "steps": [{"instruction": ""}]}')
    _photos(tmp_path / "shop", 1)
    status, output = _finish(_run(tmp_path, "bad.json", "shop", "-o", "out", "--null-editor"))
    assert status == 2 and "not a recipe I can use" in output


def test_collect_and_output_names(tmp_path: Path) -> None:
    a = _photos(tmp_path / "a", 1)[0]
    b = _photos(tmp_path / "b", 1)[0]
    assert collect([tmp_path]) == [a, b]
    assert output_names([a, b]) == {a: "item00.png", b: "item00-2.png"}
