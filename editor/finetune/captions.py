"""`pix2chat dataset captions`: a seeded synthesizer of product edit triples.

Each row is (input caption, edit instruction, output caption) for one product photo. Captions are
rendered from a structured `Scene`, and an edit changes exactly one of its slots, so the output
caption can never contradict the instruction ("make it black" cannot leave "red" behind). Edits
that would not change the scene (recolouring to the same colour) are never drawn, and rows with
the same input caption and instruction are kept once.

Column names follow the InstructPix2Pix dataset on the hub (`original_prompt`, `edit_prompt`,
`edited_prompt`), so other IP2P tooling reads the output too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editor.finetune.catalogue import (
    BASE_PLACES,
    FAMILIES,
    POLITE,
    PRODUCTS,
    EditFamily,
    Product,
    Value,
)

DEFAULT_MEDIUM = "a product photo"
REGISTERS = ("imperative", "polite", "short")


def with_article(phrase: str) -> str:
    """'a red sneaker', 'an orange sneaker': English article by the first letter's sound."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


@dataclass(frozen=True, slots=True)
class Scene:
    """What a caption says about one product photo; each edit family sets one field."""

    noun: str
    colour: str
    material: str
    plural: bool = False
    medium: str = DEFAULT_MEDIUM
    style: str = ""
    finish: str = ""
    pattern: str = ""
    view: str = ""
    effect: str = ""
    place: str = ""
    background: str = ""
    weather: str = ""
    season: str = ""
    time: str = ""
    lighting: str = ""
    props: str = ""

    def caption(self) -> str:
        """One fixed word order, so two scenes differing in one slot differ in one phrase."""
        adjectives = (self.style, self.finish, self.pattern, self.colour, self.material)
        subject = " ".join([*filter(None, adjectives), self.noun])
        tail = (
            self.view,
            self.effect,
            self.place,
            self.background,
            self.weather,
            self.season,
            self.time,
            self.lighting,
            self.props,
        )
        subject = subject if self.plural else with_article(subject)
        return " ".join([self.medium, "of", subject, *filter(None, tail)])

    def get(self, slot: str) -> str:
        value: str = getattr(self, slot)
        return value

    def with_slot(self, slot: str, value: str) -> Scene:
        changes: dict[str, Any] = {slot: value}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class CaptionTriple:
    """One synthesized row; `old_value`/`new_value` are the caption phrases the edit swaps."""

    id: str
    category: str
    product: str
    family: str
    register: str
    original_prompt: str
    edit_prompt: str
    edited_prompt: str
    old_value: str
    new_value: str
    session: str = ""  # multi-turn rows: the conversation, and this edit's place in it
    turn: int = 0


@dataclass(frozen=True, slots=True)
class SynthesisConfig:
    """How many rows to draw; the defaults give about 3,600 rows.

    Rows = categories x products_per_category x variants_per_product x families x
    values_per_family x phrasings_per_edit, less the duplicates.

    Args:
        seed: same seed, same rows, in the same order.
        categories: how many product categories (None: all of them).
        products_per_category: products drawn from each category.
        variants_per_product: colour/material/setting draws per product.
        families: edit family names to use (None: all of them).
        values_per_family: distinct targets per family and variant ("black", "blue", ...).
        phrasings_per_edit: wordings per edit, spread over the imperative/polite/short registers.
    """

    seed: int = 0
    categories: int | None = None
    products_per_category: int = 2
    variants_per_product: int = 2
    families: tuple[str, ...] | None = None
    values_per_family: int = 1
    phrasings_per_edit: int = 3

    def __post_init__(self) -> None:
        for name in (
            "products_per_category",
            "variants_per_product",
            "values_per_family",
            "phrasings_per_edit",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, not {getattr(self, name)}.")
        if self.categories is not None and self.categories < 1:
            raise ValueError(f"`categories` must be at least 1, not {self.categories}.")
        unknown = set(self.families or ()) - {family.name for family in FAMILIES}
        if unknown:
            raise ValueError(
                f"Unknown edit families: {', '.join(sorted(unknown))}. "
                f"Known: {', '.join(family.name for family in FAMILIES)}."
            )


def category_names() -> list[str]:
    """Categories in catalogue order."""
    return list(dict.fromkeys(product.category for product in PRODUCTS))


def phrasings(family: EditFamily) -> dict[str, list[str]]:
    """Every template of a family by register; polite ones wrap the imperative ones."""
    polite = [wrapper.format(template) for template in family.imperative for wrapper in POLITE]
    return {"imperative": list(family.imperative), "polite": polite, "short": list(family.short)}


def targets(family: EditFamily, product: Product) -> tuple[Value, ...]:
    """The values a family can set on this product (materials come from the product)."""
    if family.values:
        return family.values
    return tuple(Value(material, material) for material in product.materials)


def synthesize(config: SynthesisConfig) -> list[CaptionTriple]:
    """All rows for `config`, deterministic for its seed, without no-ops or duplicates."""
    rows: dict[tuple[str, str], CaptionTriple] = {}
    for row in _draw(config, random.Random(config.seed)):
        rows.setdefault((row.original_prompt, row.edit_prompt), row)
    return list(rows.values())


def _draw(config: SynthesisConfig, rng: random.Random) -> Iterator[CaptionTriple]:
    families = _families(config)
    for product, scene in _variants(config, rng):
        for family in families:
            yield from _edits(scene, product, family, config, rng)


def _families(config: SynthesisConfig) -> list[EditFamily]:
    return [f for f in FAMILIES if config.families is None or f.name in config.families]


def _variants(config: SynthesisConfig, rng: random.Random) -> Iterator[tuple[Product, Scene]]:
    names = category_names()
    if config.categories is not None and config.categories < len(names):
        names = rng.sample(names, config.categories)
    for category in names:
        products = [product for product in PRODUCTS if product.category == category]
        chosen = rng.sample(products, min(config.products_per_category, len(products)))
        for product in chosen:
            for _ in range(config.variants_per_product):
                yield product, _base_scene(product, rng)


def synthesize_sessions(config: SynthesisConfig, turns: int) -> list[CaptionTriple]:
    """Multi-turn conversations: each turn edits the scene the previous turn produced.

    One session per product variant, `turns` edits from families that set different slots
    (so no turn undoes another), one phrasing each. Rows carry `session` and `turn`.
    """
    if turns < 2:
        raise ValueError(f"A session needs at least 2 turns, not {turns}.")
    rng = random.Random(f"sessions:{config.seed}")
    families = _families(config)
    if len({family.slot for family in families}) < turns:
        raise ValueError(f"{turns} turns need edit families that set {turns} different slots.")
    rows: list[CaptionTriple] = []
    for product, start in _variants(config, rng):
        session = hashlib.sha1(f"{config.seed}:{len(rows)}:{start.caption()}".encode())
        scene = start
        used: set[str] = set()
        turn = 0
        for family in rng.sample(families, len(families)):
            if turn == turns:
                break
            options = _options(scene, product, family)
            if family.slot in used or not options:
                continue
            value = rng.choice(options)
            register, template = _pick_phrasings(phrasings(family), 1, rng)[0]
            instruction = _instruction(template, product, value, rng)
            edited = scene.with_slot(family.slot, value.caption)
            row = _row(
                product, family, register, scene, instruction, edited, scene.get(family.slot), value
            )
            rows.append(dataclasses.replace(row, session=session.hexdigest()[:12], turn=turn))
            used.add(family.slot)
            scene, turn = edited, turn + 1
    return rows


def _base_scene(product: Product, rng: random.Random) -> Scene:
    place = rng.choice(BASE_PLACES).caption if rng.random() < 0.3 else ""
    material = rng.choice(product.materials)
    colours = [colour for colour in product.colours if colour not in material.split()]
    return Scene(
        noun=product.noun,
        colour=rng.choice(colours),
        material=material,
        plural=product.plural,
        place=place,
    )


def _edits(
    scene: Scene,
    product: Product,
    family: EditFamily,
    config: SynthesisConfig,
    rng: random.Random,
) -> Iterator[CaptionTriple]:
    current = scene.get(family.slot)
    options = _options(scene, product, family)
    if not options:
        return
    by_register = phrasings(family)
    for value in rng.sample(options, min(config.values_per_family, len(options))):
        edited = scene.with_slot(family.slot, value.caption)
        for register, template in _pick_phrasings(by_register, config.phrasings_per_edit, rng):
            instruction = _instruction(template, product, value, rng)
            yield _row(product, family, register, scene, instruction, edited, current, value)


def _options(scene: Scene, product: Product, family: EditFamily) -> list[Value]:
    """Targets that change the scene: not the current value, not said elsewhere in the caption.

    "make it gold" on a gold watch would read as a no-op or as "a gold gold watch".
    """
    current = scene.get(family.slot)
    said = f" {scene.caption()} "
    return [
        value
        for value in targets(family, product)
        if value.caption != current and f" {value.caption} " not in said
    ]


def _instruction(template: str, product: Product, value: Value, rng: random.Random) -> str:
    instruction = template.format(
        noun=product.noun,
        value=value.name,
        a_value=with_article(value.name),
        caption=value.caption,
    )
    if rng.random() < 0.5:
        instruction = instruction[:1].upper() + instruction[1:]
    return instruction


def _pick_phrasings(
    by_register: dict[str, list[str]], count: int, rng: random.Random
) -> list[tuple[str, str]]:
    """`count` distinct templates, taking the registers in turn so that every one is covered."""
    pools = {
        register: rng.sample(templates, len(templates))
        for register, templates in by_register.items()
    }
    picked: list[tuple[str, str]] = []
    while len(picked) < count and any(pools.values()):
        for register in REGISTERS:
            if pools[register] and len(picked) < count:
                picked.append((register, pools[register].pop()))
    return picked


def _row(
    product: Product,
    family: EditFamily,
    register: str,
    scene: Scene,
    instruction: str,
    edited: Scene,
    old: str,
    new: Value,
) -> CaptionTriple:
    original = scene.caption()
    digest = hashlib.sha1(f"{original}\n{instruction}".encode()).hexdigest()[:16]
    return CaptionTriple(
        id=digest,
        category=product.category,
        product=product.noun,
        family=family.name,
        register=register,
        original_prompt=original,
        edit_prompt=instruction,
        edited_prompt=edited.caption(),
        old_value=old,
        new_value=new.caption,
    )


def write_jsonl(rows: Iterable[CaptionTriple], path: Path) -> int:
    """Write one JSON object per line; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[CaptionTriple]:
    """Rows written by `write_jsonl`, or by hand with at least the three prompt keys."""
    required = ("original_prompt", "edit_prompt", "edited_prompt")
    rows = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            data = json.loads(line)
            missing = [key for key in required if not isinstance(data.get(key), str)]
            if missing:
                raise ValueError(f"{path}:{number}: missing text for {', '.join(missing)}.")
            text = f"{data['original_prompt']}\n{data['edit_prompt']}"
            rows.append(
                CaptionTriple(
                    id=str(data.get("id") or hashlib.sha1(text.encode()).hexdigest()[:16]),
                    category=str(data.get("category", "")),
                    product=str(data.get("product", "")),
                    family=str(data.get("family", "")),
                    register=str(data.get("register", "")),
                    original_prompt=data["original_prompt"],
                    edit_prompt=data["edit_prompt"],
                    edited_prompt=data["edited_prompt"],
                    old_value=str(data.get("old_value", "")),
                    new_value=str(data.get("new_value", "")),
                    session=str(data.get("session", "")),
                    turn=int(data.get("turn", 0)),
                )
            )
    return rows
