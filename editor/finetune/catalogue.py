"""The product catalogue the caption synthesizer draws from: products, attributes, edit families.

Plain data, kept apart from the generator so the lists can grow without touching its logic.
Every edit family names the caption slot it changes (`Scene` field in editor/finetune/captions.py),
which is what keeps output captions consistent with their instructions.

Phrasings come in three registers, because users type all three: imperative ("change the
sneaker colour to black"), polite (derived from the imperative ones: "could you ...?") and short
("black sneaker"). Templates may use {noun} (the product), {value} (the bare attribute, "black",
"the pyramids") and {caption} (the caption phrase, "on a beach").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Product:
    """A product noun, its category, and the attributes it plausibly comes in."""

    noun: str
    category: str
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    plural: bool = False  # "sunglasses": no article in captions


@dataclass(frozen=True, slots=True)
class Value:
    """One target of an edit: how an instruction names it and how a caption says it."""

    name: str
    caption: str


@dataclass(frozen=True, slots=True)
class EditFamily:
    """A kind of edit: the caption slot it sets, its targets and its phrasings.

    An empty `values` means the targets come from the product (its materials).
    """

    name: str
    slot: str
    values: tuple[Value, ...]
    imperative: tuple[str, ...]
    short: tuple[str, ...]


def _same(*names: str) -> tuple[Value, ...]:
    return tuple(Value(name, name) for name in names)


def _values(*pairs: tuple[str, str]) -> tuple[Value, ...]:
    return tuple(Value(name, caption) for name, caption in pairs)


COLOURS = (
    "black", "white", "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown",
    "grey", "beige", "navy", "teal", "gold", "silver",
)  # fmt: skip

_NEUTRAL = ("black", "white", "grey", "beige", "brown", "navy")
_BRIGHT = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "teal")


PLURAL_NOUNS = frozenset({"headphones", "sunglasses", "eyeglasses"})


def _products(
    category: str, colours: tuple[str, ...], **materials: tuple[str, ...]
) -> list[Product]:
    return [
        Product(noun.replace("_", " "), category, colours, mats, noun in PLURAL_NOUNS)
        for noun, mats in materials.items()
    ]


PRODUCTS: tuple[Product, ...] = (
    *_products(
        "footwear",
        _NEUTRAL + _BRIGHT,
        sneaker=("canvas", "leather", "suede", "mesh"),
        boot=("leather", "suede", "rubber"),
        sandal=("leather", "rubber", "cork"),
        high_heel=("leather", "satin", "patent leather"),
    ),
    *_products(
        "bags",
        _NEUTRAL + _BRIGHT,
        handbag=("leather", "canvas", "velvet", "straw"),
        backpack=("nylon", "canvas", "leather"),
        tote_bag=("canvas", "cotton", "jute"),
    ),
    *_products(
        "watches and jewellery",
        ("black", "white", "gold", "silver", "blue", "green", "brown"),
        wristwatch=("steel", "gold", "titanium", "ceramic"),
        necklace=("gold", "silver", "pearl"),
        bracelet=("leather", "silver", "beaded"),
    ),
    *_products(
        "electronics",
        ("black", "white", "grey", "silver", "blue", "red", "pink", "green"),
        headphones=("plastic", "aluminium", "leather"),
        smartphone=("glass", "aluminium", "plastic"),
        laptop=("aluminium", "plastic", "carbon fibre"),
        bluetooth_speaker=("fabric", "plastic", "rubber"),
        camera=("metal", "plastic", "leather"),
    ),
    *_products(
        "furniture",
        (*_NEUTRAL, "green", "blue", "yellow", "teal"),
        armchair=("velvet", "leather", "linen", "wicker"),
        sofa=("velvet", "leather", "linen"),
        desk_lamp=("brass", "steel", "ceramic"),
        coffee_table=("oak", "walnut", "glass", "marble"),
    ),
    *_products(
        "cosmetics",
        ("red", "pink", "gold", "black", "white", "purple", "beige"),
        lipstick=("metal", "plastic", "matte"),
        perfume_bottle=("glass", "crystal", "frosted glass"),
        cream_jar=("glass", "ceramic", "plastic"),
        nail_polish_bottle=("glass", "frosted glass"),
    ),
    *_products(
        "kitchenware",
        _NEUTRAL + _BRIGHT,
        coffee_mug=("ceramic", "enamel", "glass", "stoneware"),
        teapot=("ceramic", "cast iron", "glass", "porcelain"),
        frying_pan=("cast iron", "copper", "stainless steel"),
        water_bottle=("stainless steel", "glass", "plastic"),
    ),
    *_products(
        "toys",
        (*_BRIGHT, "brown", "white"),
        teddy_bear=("plush", "knitted", "felt"),
        toy_car=("plastic", "wooden", "die-cast metal"),
        rubber_duck=("rubber", "vinyl"),
        robot_toy=("plastic", "tin", "wooden"),
    ),
    *_products(
        "clothing",
        _NEUTRAL + _BRIGHT,
        t_shirt=("cotton", "linen", "silk"),
        hoodie=("cotton", "fleece", "wool"),
        baseball_cap=("cotton", "denim", "corduroy"),
        jacket=("denim", "leather", "wool", "nylon"),
    ),
    *_products(
        "home decor",
        _NEUTRAL + _BRIGHT,
        vase=("ceramic", "glass", "porcelain", "terracotta"),
        scented_candle=("wax", "soy wax", "beeswax"),
        cushion=("velvet", "linen", "cotton", "wool"),
        wall_clock=("wooden", "metal", "plastic"),
    ),
    *_products(
        "eyewear",
        ("black", "brown", "gold", "silver", "red", "blue", "white"),
        sunglasses=("plastic", "metal", "tortoiseshell"),
        eyeglasses=("acetate", "titanium", "wire"),
    ),
    *_products(
        "sports",
        _NEUTRAL + _BRIGHT,
        bicycle=("steel", "aluminium", "carbon fibre"),
        skateboard=("maple", "bamboo", "plastic"),
        football=("leather", "synthetic leather"),
        yoga_mat=("rubber", "cork", "foam"),
    ),
)

# Where an input photo may already be; edits of the same slot then swap it.
BASE_PLACES = _values(
    ("a wooden table", "on a wooden table"),
    ("a pedestal", "on a pedestal"),
    ("a shelf", "on a shelf"),
)

_PLACE = (
    "put the {noun} {caption}",
    "place the {noun} {caption}",
    "move it {caption}",
    "show it {caption}",
)

FAMILIES: tuple[EditFamily, ...] = (
    EditFamily(
        "recolour",
        "colour",
        _same(*COLOURS),
        (
            "change the {noun} colour to {value}",
            "change {noun} color to {value}",
            "make it {value}",
            "paint the {noun} {value}",
        ),
        ("{value} {noun}", "{value}"),
    ),
    EditFamily(
        "material",
        "material",
        (),
        ("make it {value}", "make the {noun} out of {value}", "change the material to {value}"),
        ("{value} {noun}", "{value} version"),
    ),
    EditFamily(
        "pattern",
        "pattern",
        _same("striped", "polka-dot", "floral", "checkered", "camouflage", "leopard-print"),
        ("make it {value}", "give the {noun} {a_value} pattern", "add {a_value} pattern"),
        ("{value} {noun}", "{value} pattern"),
    ),
    EditFamily(
        "finish",
        "finish",
        _same("glossy", "matte", "glittery", "metallic", "iridescent"),
        ("make it {value}", "give the {noun} {a_value} finish", "make the {noun} look {value}"),
        ("{value} finish", "{value}"),
    ),
    EditFamily(
        "product style",
        "style",
        _same("vintage", "futuristic", "minimalist", "luxury", "retro", "rustic"),
        ("make it {value}", "make the {noun} look {value}", "give it {a_value} look"),
        ("{value} style", "{value} {noun}"),
    ),
    EditFamily(
        "outdoor placement",
        "place",
        _values(
            ("the beach", "on a beach"),
            ("the desert", "in a desert"),
            ("a forest", "in a forest"),
            ("a roof", "on a roof"),
            ("a field of flowers", "in a field of flowers"),
            ("a park bench", "on a park bench"),
        ),
        _PLACE,
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "indoor placement",
        "place",
        _values(
            ("a marble table", "on a marble table"),
            ("a kitchen counter", "on a kitchen counter"),
            ("a living room", "in a living room"),
            ("a modern office", "in a modern office"),
            ("a cozy bedroom", "in a cozy bedroom"),
            ("a shop window", "in a shop window"),
        ),
        _PLACE,
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "held",
        "place",
        _values(
            ("someone's hands", "in someone's hands"),
            ("a child's hands", "in a child's hands"),
            ("a model's hand", "in a model's hand"),
        ),
        ("put the {noun} {caption}", "show it {caption}", "put it {caption}"),
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "in the air",
        "place",
        _values(
            ("the air", "floating in the air"),
            ("space", "floating in space"),
            ("the clouds", "floating in the clouds"),
        ),
        ("make the {noun} float in {value}", "put it in {value}", "make it fly in {value}"),
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "water",
        "place",
        _values(
            ("water", "covered with water"),
            ("a pool", "floating in a pool"),
            ("a puddle", "in a puddle"),
        ),
        ("put the {noun} in {value}", "show it {caption}", "make it {caption}"),
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "event",
        "place",
        _values(
            ("a festival", "at a festival"),
            ("a party", "at a party"),
            ("a wedding", "at a wedding"),
            ("a concert", "at a concert"),
        ),
        ("put it in {value}", "put the {noun} {caption}", "show the {noun} {caption}"),
        ("{caption}", "{noun} {caption}"),
    ),
    EditFamily(
        "snow",
        "weather",
        _values(("snow", "in the snow"), ("heavy snow", "in heavy snow")),
        ("add snow effects", "add {value}", "make it snow", "cover the scene in {value}"),
        ("{value}", "snowy"),
    ),
    EditFamily(
        "rain and fog",
        "weather",
        _values(("rain", "in the rain"), ("fog", "in the fog"), ("a storm", "in a storm")),
        ("add {value}", "make it look like {value}", "put the {noun} in {value}"),
        ("{value}", "{caption}"),
    ),
    EditFamily(
        "season",
        "season",
        _values(
            ("spring", "in spring"),
            ("summer", "in summer"),
            ("autumn", "in autumn"),
            ("winter", "in winter"),
        ),
        ("make it {value}", "change the season to {value}", "make the scene {value}"),
        ("{value}", "{value} vibe"),
    ),
    EditFamily(
        "time of day",
        "time",
        _values(
            ("daytime", "in daytime"),
            ("nighttime", "at night"),
            ("sunset", "at sunset"),
            ("dawn", "at dawn"),
        ),
        ("make the scene in {value}", "make it {value}", "change the time to {value}"),
        ("{value}", "{caption}"),
    ),
    EditFamily(
        "landmark background",
        "background",
        _values(
            ("the pyramids", "in front of the pyramids"),
            ("the eiffel tower", "in front of the eiffel tower"),
            ("the statue of liberty", "in front of the statue of liberty"),
            ("the taj mahal", "in front of the taj mahal"),
            ("the colosseum", "in front of the colosseum"),
        ),
        (
            "add {value} in the background",
            "put {value} behind the {noun}",
            "place it in front of {value}",
        ),
        ("{value} background", "{value} behind it"),
    ),
    EditFamily(
        "nature background",
        "background",
        _values(
            ("a mountain", "in front of a mountain"),
            ("a waterfall", "in front of a waterfall"),
            ("the ocean", "in front of the ocean"),
            ("a volcano", "in front of a volcano"),
        ),
        (
            "add {value} in the background",
            "put {value} behind the {noun}",
            "change the background to {value}",
        ),
        ("{value} background", "{value} behind it"),
    ),
    EditFamily(
        "city background",
        "background",
        _values(
            ("a city skyline", "in front of a city skyline"),
            ("a neon street", "in front of a neon street"),
            ("a busy market", "in front of a busy market"),
        ),
        (
            "add {value} in the background",
            "change the background to {value}",
            "put {value} behind it",
        ),
        ("{value} background", "{value} behind it"),
    ),
    EditFamily(
        "painting style",
        "medium",
        _values(
            ("watercolor painting", "a watercolor painting"),
            ("oil painting", "an oil painting"),
            ("pencil sketch", "a pencil sketch"),
            ("pop art poster", "a pop art poster"),
            ("ukiyo-e print", "an ukiyo-e print"),
        ),
        ("make it {caption}", "turn it into {caption}", "turn the photo into {caption}"),
        ("{value}", "{value} style"),
    ),
    EditFamily(
        "render style",
        "medium",
        _values(
            ("3d render", "a 3d render"),
            ("cartoon", "a cartoon drawing"),
            ("pixel art", "a pixel art image"),
            ("claymation", "a claymation still"),
            ("low-poly", "a low-poly render"),
        ),
        ("make it {caption}", "turn it into {caption}", "render it as {caption}"),
        ("{value}", "{value} style"),
    ),
    EditFamily(
        "photo style",
        "medium",
        _values(
            ("vintage photo", "a vintage photo"),
            ("polaroid", "a polaroid photo"),
            ("film photo", "a film photo"),
            ("magazine ad", "a magazine advertisement"),
        ),
        ("make it {caption}", "make it look like {caption}", "turn it into {caption}"),
        ("{value} look", "{value} style"),
    ),
    EditFamily(
        "lighting",
        "lighting",
        _values(
            ("soft studio lighting", "with soft studio lighting"),
            ("dramatic lighting", "with dramatic lighting"),
            ("neon lighting", "with neon lighting"),
            ("golden hour light", "in golden hour light"),
            ("candlelight", "by candlelight"),
        ),
        ("add {value}", "light it with {value}", "change the lighting to {value}"),
        ("{value}", "{caption}"),
    ),
    EditFamily(
        "props",
        "props",
        _values(
            ("flowers", "surrounded by flowers"),
            ("autumn leaves", "surrounded by autumn leaves"),
            ("confetti", "surrounded by confetti"),
            ("balloons", "surrounded by balloons"),
            ("christmas decorations", "surrounded by christmas decorations"),
        ),
        ("add {value} around the {noun}", "surround it with {value}", "put {value} around it"),
        ("{value} around it", "with {value}"),
    ),
    EditFamily(
        "effect",
        "effect",
        _values(
            ("fire", "on fire"),
            ("ice", "frozen in ice"),
            ("gift wrap", "wrapped as a gift"),
            ("sparkles", "covered in sparkles"),
            ("smoke", "surrounded by smoke"),
        ),
        ("add {value} to the {noun}", "show it {caption}", "show the {noun} {caption}"),
        ("{value}", "{caption}"),
    ),
    EditFamily(
        "size and view",
        "view",
        _values(
            ("close-up", "in close-up"),
            ("top view", "seen from above"),
            ("wide shot", "in a wide shot"),
        ),
        ("make it {a_value}", "show it {caption}", "change the view to {value}"),
        ("{value}", "{value} shot"),
    ),
)

# Wrapped around every imperative phrasing to make the polite register.
POLITE = ("please {0}", "could you {0}?", "can you {0}, please?", "I'd like you to {0}")
