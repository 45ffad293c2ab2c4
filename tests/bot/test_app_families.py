"""The production graph with the other families: settings pick the editor, a real tiny edit
runs end to end through the service, and several models share the embedded worker (LRU)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.app import build, make_editor
from bot.config import Settings, parse_models
from bot.service.replies import Reply
from editor.errors import ModelLoadError
from editor.families.editor import FamilyEditor
from editor.families.pool import ModelPool
from editor.images import fitted_size
from editor.pix2pix import DiffusersEditor
from storage.models import Version
from tests.bot.service.harness import ALICE, BOB, Recorder, photo


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        device="cpu",
        data_dir=tmp_path / "data",
        default_steps=2,
        default_resolution=256,
        max_wait_ms=0,
        **values,
    )


def test_the_model_folder_picks_the_editor(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path
) -> None:
    assert isinstance(make_editor(_settings(tmp_path, model=str(tiny_model_dir))), DiffusersEditor)
    kontext = make_editor(_settings(tmp_path, model=str(tiny_kontext_dir), offload=True))
    assert isinstance(kontext, FamilyEditor) and kontext.family.name == "flux-kontext"
    assert kontext.offload


def test_an_unsupported_model_is_an_error_naming_the_families(tmp_path: Path) -> None:
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "QwenImageEditPlusPipeline"}')

    with pytest.raises(ModelLoadError, match="flux-kontext"):
        make_editor(_settings(tmp_path, model=str(folder)))


def test_models_list_is_parsed_and_bad_entries_are_load_errors(tmp_path: Path) -> None:
    assert parse_models(" a=x/y , kontext=/m/k ") == {"a": "x/y", "kontext": "/m/k"}
    for bad in ("a", "A=x", "a=x,a=y", "=x"):
        with pytest.raises(ModelLoadError, match="PIX2CHAT_MODELS"):
            make_editor(_settings(tmp_path, models=bad))


def test_the_default_model_is_pix2chat_model_or_the_first(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path
) -> None:
    models = f"ip2p={tiny_model_dir},kontext={tiny_kontext_dir}"
    assert _settings(tmp_path, models=models).default_model_name() == "ip2p"
    chosen = _settings(tmp_path, models=models, model="kontext")
    assert chosen.default_model_name() == "kontext"
    pool = make_editor(chosen)
    assert isinstance(pool, ModelPool) and pool.default == "kontext"
    assert chosen.default_params().model == "kontext"


async def _edit(components: object, recorder: Recorder, user: object, text: str) -> Version:
    service = components.service  # type: ignore[attr-defined]
    reply: Reply = await service.instruct(user, text)
    assert reply.version_id is not None, reply
    await recorder.done(reply.version_id)
    async with components.database.read() as session:  # type: ignore[attr-defined]
        version = await session.get(Version, reply.version_id)
    assert version is not None
    return version


async def test_a_kontext_edit_runs_end_to_end_and_keeps_size_and_aspect(
    tiny_kontext_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = Recorder(timeout_s=120.0)
    async with build(_settings(tmp_path, model=str(tiny_kontext_dir))) as components:
        components.service.subscribe(ALICE.platform, recorder)
        await components.service.receive_image(ALICE, photo((90, 60)))
        version = await _edit(components, recorder, ALICE, "make it night")
        assert version.raw_image_sha is not None
        raw = Image.open(io.BytesIO(components.images.get(version.raw_image_sha)))
        assert version.status.value == "done"
    assert (version.width, version.height) == (90, 60)  # developed onto the parent
    assert raw.size == fitted_size((90, 60), 256)  # re-aligned to the model's input
    assert version.params is not None and "model" not in version.params  # one model: unnamed


async def test_two_models_share_the_embedded_worker_least_recently_used_unloaded(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _settings(
        tmp_path,
        models=f"ip2p={tiny_model_dir},kontext={tiny_kontext_dir}",
        gpu_memory_gb=0.001,  # 1 MiB: the tiny models fit one at a time
    )
    recorder = Recorder(timeout_s=120.0)
    async with build(settings) as components:
        pool = components.editor
        assert isinstance(pool, ModelPool)
        assert list(pool.loaded) == ["ip2p"]  # the default loads at start; the other on use
        service = components.service
        service.subscribe(ALICE.platform, recorder)
        for user in (ALICE, BOB):
            await service.receive_image(user, photo((64, 48)))
        switched = await service.update_setting(BOB, "model", "kontext")
        assert not switched.is_error

        alice = await _edit(components, recorder, ALICE, "make it night")
        bob = await _edit(components, recorder, BOB, "make it night")
        assert list(pool.loaded) == ["kontext"] and pool.unloads == 1
        again = await _edit(components, recorder, ALICE, "add snow")
        assert list(pool.loaded) == ["ip2p"] and pool.unloads == 2

        refused = await service.update_setting(ALICE, "model", "qwen")
        assert refused.is_error and "ip2p, kontext" in refused.text()
    # Every version records its model, so it can be reproduced.
    assert [v.params["model"] for v in (alice, bob, again) if v.params] == [
        "ip2p",
        "kontext",
        "ip2p",
    ]


async def test_kontext_users_have_no_image_guidance_in_settings(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _settings(tmp_path, models=f"ip2p={tiny_model_dir},kontext={tiny_kontext_dir}")
    async with build(settings) as components:
        service = components.service
        shown = await service.settings(ALICE)
        assert shown.settings is not None and "image_guidance_scale" in shown.settings
        assert not (await service.update_setting(ALICE, "image_guidance", "2")).is_error

        await service.update_setting(ALICE, "model", "kontext")
        shown = await service.settings(ALICE)
        assert shown.settings is not None and "image_guidance_scale" not in shown.settings
        assert "image guidance" not in shown.text()
        asked = await service.update_setting(ALICE, "image guidance", "3")
        assert asked.is_error and "kontext" in asked.text() and "no image guidance" in asked.text()
        # Still usable: other settings change, and switching back shows it again.
        assert not (await service.update_setting(ALICE, "steps", "4")).is_error
        await service.update_setting(ALICE, "model", "ip2p")
        back = await service.settings(ALICE)
        assert back.settings is not None and back.settings["image_guidance_scale"] == 2.0


async def test_a_qwen_image_edit_runs_end_to_end_through_the_service(
    tiny_qwen_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = Recorder(timeout_s=180.0)
    async with build(_settings(tmp_path, model=str(tiny_qwen_dir))) as components:
        assert isinstance(components.editor, FamilyEditor)
        assert components.editor.family.name == "qwen-image-edit"
        components.service.subscribe(ALICE.platform, recorder)
        await components.service.receive_image(ALICE, photo((80, 60)))
        version = await _edit(components, recorder, ALICE, "make it night")
        assert version.raw_image_sha is not None
        raw = Image.open(io.BytesIO(components.images.get(version.raw_image_sha)))
    assert (version.width, version.height) == (80, 60)
    assert raw.size == fitted_size((80, 60), 256)
