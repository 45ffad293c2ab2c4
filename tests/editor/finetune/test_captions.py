"""The caption synthesizer: determinism, consistency, no no-ops, coverage, phrasing variety."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from editor.finetune.captions import (
    REGISTERS,
    CaptionTriple,
    SynthesisConfig,
    category_names,
    read_jsonl,
    synthesize,
    synthesize_sessions,
    write_jsonl,
)
from editor.finetune.catalogue import COLOURS, FAMILIES


@pytest.fixture(scope="module")
def rows() -> list[CaptionTriple]:
    return synthesize(SynthesisConfig(seed=3))


def _words(caption: str, phrase: str) -> list[str]:
    """The caption's words without one phrase and without articles (they follow the adjective)."""
    if phrase:
        assert caption.count(phrase) == 1, (caption, phrase)
        caption = caption.replace(phrase, " ")
    return [word for word in caption.split() if word not in ("a", "an")]


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    config = SynthesisConfig(seed=11, categories=4, phrasings_per_edit=2)
    first = synthesize(config)
    assert first == synthesize(config)
    other = synthesize(SynthesisConfig(seed=12, categories=4, phrasings_per_edit=2))
    assert [r.original_prompt for r in first] != [r.original_prompt for r in other]


def test_the_output_caption_is_the_input_with_exactly_the_edited_phrase_swapped(
    rows: list[CaptionTriple],
) -> None:
    for row in rows:
        assert row.original_prompt != row.edited_prompt
        assert row.new_value and row.new_value in row.edited_prompt
        # Everything but the edited phrase survives, in order.
        assert _words(row.original_prompt, row.old_value) == _words(
            row.edited_prompt, row.new_value
        ), row


def test_recolours_leave_no_trace_of_the_old_colour(rows: list[CaptionTriple]) -> None:
    recolours = [row for row in rows if row.family == "recolour"]
    assert len(recolours) > 100
    for row in recolours:
        before = set(row.original_prompt.split()) & set(COLOURS)
        after = set(row.edited_prompt.split()) & set(COLOURS)
        assert row.old_value in before and row.old_value not in after, row
        assert row.new_value in after, row
        # Colour words of other slots ("a blue silver necklace": silver is the material) stay.
        assert before - {row.old_value} == after - {row.new_value}, row


def test_no_edit_is_a_no_op(rows: list[CaptionTriple]) -> None:
    assert all(row.old_value != row.new_value for row in rows)
    # Even when every target of a family is drawn, the current value is never one of them.
    many = synthesize(
        SynthesisConfig(seed=5, families=("recolour",), values_per_family=len(COLOURS))
    )
    per_input = Counter(row.original_prompt for row in many if row.register == "imperative")
    assert max(per_input.values()) == len(COLOURS) - 1
    for row in many:
        assert row.new_value not in row.original_prompt.split()


def test_the_instruction_names_its_target(rows: list[CaptionTriple]) -> None:
    families = {family.name: family for family in FAMILIES}
    for row in rows:
        names = [
            value.name for value in families[row.family].values if value.caption == row.new_value
        ] or [row.new_value]  # materials: name and caption are the same
        instruction = row.edit_prompt.lower()
        keywords = {
            word for text in [*names, row.new_value] for word in re.findall(r"[\w'-]{3,}", text)
        }
        keywords -= {"the", "with", "front", "surrounded", "floating", "seen"}
        assert any(word in instruction for word in keywords), row


def test_no_duplicate_rows_and_stable_ids(rows: list[CaptionTriple]) -> None:
    keys = [(row.original_prompt, row.edit_prompt) for row in rows]
    assert len(keys) == len(set(keys))
    assert len({row.id for row in rows}) == len(rows)


def test_every_family_and_category_is_covered(rows: list[CaptionTriple]) -> None:
    assert len(FAMILIES) >= 25
    assert {row.family for row in rows} == {family.name for family in FAMILIES}
    assert {row.category for row in rows} == set(category_names())
    assert len(category_names()) >= 10


def test_phrasings_cover_every_register_and_vary(rows: list[CaptionTriple]) -> None:
    for family in FAMILIES:
        mine = [row for row in rows if row.family == family.name]
        assert {row.register for row in mine} == set(REGISTERS), family.name
        assert len({row.edit_prompt.lower() for row in mine}) >= 10, family.name
    polite = [row.edit_prompt.lower() for row in rows if row.register == "polite"]
    assert all(re.search(r"\b(please|could you|can you|i'd like)\b", text) for text in polite)
    # Each (input, target) pair is worded in as many different ways as asked for.
    per_edit = Counter((row.original_prompt, row.edited_prompt) for row in rows)
    assert Counter(per_edit.values()).most_common(1)[0][0] == 3


def test_counts_scale_with_the_configuration() -> None:
    rows = synthesize(
        SynthesisConfig(
            categories=10,
            products_per_category=1,
            variants_per_product=1,
            phrasings_per_edit=4,
        )
    )
    # 10 categories x 25 families x 4 phrasings, less the rare duplicate.
    assert 0.95 * 10 * len(FAMILIES) * 4 <= len(rows) <= 10 * len(FAMILIES) * 4
    assert len({row.category for row in rows}) == 10


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="phrasings_per_edit"):
        SynthesisConfig(phrasings_per_edit=0)
    with pytest.raises(ValueError, match="Unknown edit families: teleport"):
        SynthesisConfig(families=("teleport",))


def test_jsonl_round_trip(rows: list[CaptionTriple], tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    assert write_jsonl(rows[:50], path) == 50
    assert read_jsonl(path) == rows[:50]
    (tmp_path / "bad.jsonl").write_text('{"original_prompt": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_sessions_chain_each_turn_on_the_previous_one() -> None:
    config = SynthesisConfig(seed=2, categories=3, products_per_category=2, variants_per_product=1)
    rows = synthesize_sessions(config, turns=3)
    assert rows == synthesize_sessions(config, turns=3)
    sessions: dict[str, list[CaptionTriple]] = {}
    for row in rows:
        sessions.setdefault(row.session, []).append(row)
    assert len(sessions) == 6
    families = {family.name: family for family in FAMILIES}
    for turns in sessions.values():
        assert [row.turn for row in turns] == [0, 1, 2]
        for before, after in itertools.pairwise(turns):
            assert after.original_prompt == before.edited_prompt
        # Three different slots, so no turn undoes another, and every turn changes the caption.
        assert len({families[row.family].slot for row in turns}) == 3
        assert all(row.original_prompt != row.edited_prompt for row in turns)
    with pytest.raises(ValueError, match="at least 2 turns"):
        synthesize_sessions(config, turns=1)
