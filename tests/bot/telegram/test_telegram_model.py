"""/model on Telegram: list the models, switch (stored per user), bad names answered kindly."""

from __future__ import annotations

from pathlib import Path

from editor.testing.doubles import GatedEditor
from tests.bot.telegram.test_telegram import (
    ALICE,
    BOB,
    api,  # noqa: F401 (the fake Bot API fixture)
    jpeg,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI

MODELS = "ip2p=timbrooks/instruct-pix2pix,kontext=black-forest-labs/FLUX.1-Kontext-dev"


async def test_model_lists_switches_per_user_and_reaches_the_edit(
    api: FakeBotAPI,  # noqa: F811
    tmp_path: Path,
) -> None:
    editor = GatedEditor()
    async with running_bot(api, tmp_path / "data", editor, models=MODELS):
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/model")
        listing = await next_text(api, ALICE, since, contains="Models here")
        assert "You edit with ip2p" in listing and "ip2p, kontext" in listing

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/model dalle")
        assert "one of ip2p, kontext" in await next_text(api, ALICE, since, contains="model")

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/model kontext")
        assert "model is now kontext" in await next_text(api, ALICE, since, contains="kontext")

        for user in (ALICE, BOB):
            since = len(api.calls)
            api.send_photo(user, user, jpeg())
            await next_text(api, user, since, contains="Got your photo")
            await result_of(api, user, user, "make it night")
        # Alice's choice is hers alone: Bob keeps the default.
        assert [call[0].params.model for call in editor.calls] == ["kontext", "ip2p"]


async def test_model_with_one_model_says_there_is_nothing_to_pick(
    api: FakeBotAPI,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with running_bot(api, tmp_path / "data", GatedEditor()):
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/model kontext")
        assert "one model" in await next_text(api, ALICE, since, contains="model")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/model")
        assert "one model" in await next_text(api, ALICE, since, contains="model")
