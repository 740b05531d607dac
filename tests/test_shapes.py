"""The Shapes world keeps its promises: deterministic, well-formed, captions and answers true, fast."""

from __future__ import annotations

import re

import pytest
import torch

from utils import convert, motion, shapes, web_corpus

FULL_OBJECT = r"an? (small|large) (\w+) (\w+)"
FULL_CAPTION = re.compile(
    rf"^{FULL_OBJECT}(?: (left of|right of|above|below) {FULL_OBJECT})?(?:, with (.+))?$"
)


@pytest.fixture(scope="module")
def scenes() -> shapes.ShapesBatch:
    return shapes.generate(400, seed=11, min_objects=1, max_objects=3)


def true_relation(centre_a: torch.Tensor, centre_b: torch.Tensor) -> str:
    """Where a is relative to b, judged independently of the library's helper."""
    dx, dy = float(centre_a[0] - centre_b[0]), float(centre_a[1] - centre_b[1])
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_batch_and_different_seed_different_batch():
    first = shapes.generate(64, seed=3, max_objects=3, caption_style="varied")
    again = shapes.generate(64, seed=3, max_objects=3, caption_style="varied")
    other = shapes.generate(64, seed=4, max_objects=3, caption_style="varied")
    for name in ("images", "colour", "shape", "size", "centre", "boxes", "count", "relation"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert first.captions == again.captions
    assert not torch.equal(first.images, other.images)
    assert first.captions != other.captions


def test_generation_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    shapes.generate(8, seed=0)
    motion.motion_clips(2, seed=0)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------ shapes and ranges


@pytest.mark.parametrize("image_size", [16, 32, 64, 128])
def test_tensor_shapes_dtypes_and_ranges(image_size):
    batch = shapes.generate(24, seed=1, image_size=image_size, max_objects=2)
    assert batch.images.shape == (24, 3, image_size, image_size)
    assert batch.images.dtype == torch.float32
    assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0
    for name in ("colour", "shape", "size"):
        labels = getattr(batch, name)
        assert labels.shape == (24, 2) and labels.dtype == torch.long
    assert batch.centre.shape == (24, 2, 2) and batch.boxes.shape == (24, 2, 4)
    assert batch.count.shape == (24,) and len(batch.captions) == 24 and len(batch) == 24
    present = torch.arange(2) < batch.count[:, None]
    assert torch.equal(batch.colour >= 0, present) and torch.equal(batch.shape >= 0, present)
    boxes = batch.boxes[present]
    assert (boxes >= 0).all() and (boxes <= image_size).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_objects_of_one_image_have_distinct_colours_and_shapes(scenes):
    for i in range(len(scenes)):
        k = int(scenes.count[i])
        assert len(set(scenes.colour[i, :k].tolist())) == k
        assert len(set(scenes.shape[i, :k].tolist())) == k


def test_objects_barely_overlap_and_the_first_two_have_a_clear_relation(scenes):
    for i in torch.nonzero(scenes.count >= 2).flatten().tolist():
        k = int(scenes.count[i])
        radius = torch.tensor(shapes.RADIUS_FRACTION)[scenes.size[i, :k]] * 32
        for a in range(k):
            for b in range(a + 1, k):
                distance = float((scenes.centre[i, a] - scenes.centre[i, b]).norm())
                assert distance >= 0.9 * float(radius[a] + radius[b])
        offset = (scenes.centre[i, 0] - scenes.centre[i, 1]).abs()
        assert float(offset.max() - offset.min()) >= 0.1 * 32 - 1e-4


def test_pixels_show_each_object_in_its_colour_and_nothing_outside_the_boxes():
    batch = shapes.generate(60, seed=2, max_objects=3, noise=0.0, background=False)
    palette = torch.tensor([shapes.COLOUR_RGB[c] for c in shapes.COLOURS])
    for i in range(len(batch)):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        for k in range(int(batch.count[i])):
            x, y = batch.centre[i, k].long().tolist()
            pixel = batch.images[i, :, y, x]
            assert torch.allclose(pixel, palette[batch.colour[i, k]], atol=0.02), (i, k)
            x0, y0, x1, y1 = batch.boxes[i, k].tolist()
            inside[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
        assert float(batch.images[i][:, ~inside].max()) < 0.05, f"ink outside the boxes in image {i}"


def test_every_shape_fills_a_plausible_part_of_its_box():
    batch = shapes.generate(200, seed=5, noise=0.0, background=False, image_size=64)
    coverage = {}
    for i in range(len(batch)):
        x0, y0, x1, y1 = batch.boxes[i, 0].round().long().tolist()
        ink = batch.images[i].amax(dim=0)[y0:y1, x0:x1] > 0.5
        coverage.setdefault(shapes.SHAPES[int(batch.shape[i, 0])], []).append(float(ink.float().mean()))
    mean = {name: sum(v) / len(v) for name, v in coverage.items()}
    assert 0.70 < mean["circle"] < 0.85  # pi / 4 of the box
    assert mean["square"] > 0.85
    assert 0.40 < mean["triangle"] < 0.60  # half of the box
    assert 0.45 < mean["cross"] < 0.70


# ------------------------------------------------------------------------------ splits


def test_train_split_never_shows_a_held_out_pair():
    batch = shapes.generate(500, seed=7, min_objects=1, max_objects=4, split="train")
    held = shapes.holdout_table(shapes.DEFAULT_HOLDOUT)
    present = batch.colour >= 0
    assert not held[batch.colour[present], batch.shape[present]].any()


def test_test_split_puts_a_held_out_pair_first():
    batch = shapes.generate(300, seed=7, max_objects=3, split="test")
    held = shapes.holdout_table(shapes.DEFAULT_HOLDOUT)
    assert held[batch.colour[:, 0], batch.shape[:, 0]].all()
    seen = {(int(c), int(s)) for c, s in zip(batch.colour[:, 0], batch.shape[:, 0], strict=True)}
    assert len(seen) == len(shapes.DEFAULT_HOLDOUT)


def test_default_holdout_covers_every_colour_once_and_every_shape():
    colours = [c for c, _ in shapes.DEFAULT_HOLDOUT]
    assert sorted(colours) == sorted(shapes.COLOURS)
    assert {s for _, s in shapes.DEFAULT_HOLDOUT} == set(shapes.SHAPES)


def test_custom_holdout():
    batch = shapes.generate(100, seed=1, split="test", holdout=(("blue", "cross"),))
    assert set(batch.captions) <= {"a small blue cross", "a large blue cross"}


# ------------------------------------------------------------------------------ captions


def test_full_captions_are_true(scenes):
    for i, caption in enumerate(scenes.captions):
        match = FULL_CAPTION.match(caption)
        assert match, caption
        objects = scenes.objects(i)
        size, colour, shape = match.group(1, 2, 3)
        first = objects[0]
        assert (size, colour, shape) == (first["size"], first["colour"], first["shape"]), caption
        if len(objects) == 1:
            assert match.group(4) is None
            continue
        assert match.group(4) == true_relation(scenes.centre[i, 0], scenes.centre[i, 1]), caption
        assert match.group(5, 6, 7) == (objects[1]["size"], objects[1]["colour"], objects[1]["shape"])
        rest = [o["description"] for o in objects[2:]]
        assert (match.group(8) or "") == " and ".join(rest), caption


def test_partial_captions_only_mention_what_is_there():
    batch = shapes.generate(300, seed=9, max_objects=2, caption_style="partial")
    vocabulary = set(shapes.COLOURS) | set(shapes.SHAPES) | set(shapes.SIZES)
    shortened = 0
    for i, caption in enumerate(batch.captions):
        objects = batch.objects(i)
        words = set(re.findall(r"\w+", caption)) & vocabulary
        allowed = {value for o in objects for value in (o["colour"], o["shape"], o["size"])}
        assert words and words <= allowed, caption
        shortened += caption != shapes.caption_for(batch, i, "full")
    assert shortened > 250


def test_varied_captions_keep_the_content_in_many_phrasings():
    batch = shapes.generate(300, seed=9, caption_style="varied")
    for i, caption in enumerate(batch.captions):
        first = batch.objects(i)[0]
        assert first["colour"] in caption and first["shape"] in caption, caption
    assert len({re.sub(r"(small |large )?\w+ \w+$", "", c) for c in batch.captions}) >= 5


def test_describe_class_prompts_and_pair_index():
    assert shapes.describe("red", "circle", "small") == "a small red circle"
    assert shapes.describe("orange", "cross") == "an orange cross"
    assert shapes.describe(1, None) == "a green object"
    prompts = shapes.class_prompts()
    assert len(prompts) == 24 and len(set(prompts)) == 24
    for colour in range(6):
        for shape in range(4):
            expected = f"{shapes.COLOURS[colour]} {shapes.SHAPES[shape]}"
            assert prompts[shapes.pair_index(colour, shape)].endswith(expected)
    assert prompts[shapes.pair_index(5, 0)] == "a photo of an orange circle"
    assert shapes.class_prompts("{shape} in {colour}")[1] == "square in red"
    assert shapes.pair_names()[shapes.pair_index(4, 2)] == ("purple", "triangle")


# ------------------------------------------------------------------------------ batch helpers


def test_subset_to_and_objects(scenes):
    single = scenes.subset(3)
    assert len(single) == 1 and single.captions == [scenes.captions[3]]
    assert torch.equal(single.images[0], scenes.images[3])
    evens = scenes.subset(slice(0, 10, 2))
    assert evens.captions == scenes.captions[0:10:2]
    mask = scenes.count == 1
    ones = scenes.subset(mask)
    assert len(ones) == int(mask.sum()) and (ones.count == 1).all()
    assert torch.equal(scenes.subset([5, 1]).colour, scenes.colour[[5, 1]])
    moved = scenes.to("cpu")
    assert moved.images.device.type == "cpu" and moved.captions == scenes.captions
    first = ones.objects(0)[0]
    assert ones.captions[0] == first["description"]
    assert set(first) == {"colour", "shape", "size", "centre", "box", "description"}


def test_make_grid_tiles_images():
    grid = shapes.make_grid(torch.zeros(10, 3, 32, 32), nrow=4, padding=2)
    assert grid.shape == (3, 3 * 34 + 2, 4 * 34 + 2)


# ------------------------------------------------------------------------------ questions


def test_questions_are_answered_correctly_and_yes_no_are_balanced():
    batch = shapes.generate(300, seed=4, min_objects=1, max_objects=3)
    asked = shapes.questions(batch, seed=1, kinds=shapes.QUESTION_KINDS)
    by_kind: dict[str, list[dict]] = {}
    for qa in asked:
        by_kind.setdefault(qa["kind"], []).append(qa)
        objects = batch.objects(qa["image_index"])
        question, answer = qa["question"], qa["answer"]
        if qa["kind"] == "colour":
            shape = re.match(r"what colour is the (\w+)\?", question).group(1)
            assert answer == next(o["colour"] for o in objects if o["shape"] == shape)
        elif qa["kind"] == "shape":
            colour = re.match(r"what shape is the (\w+) object\?", question).group(1)
            assert answer == next(o["shape"] for o in objects if o["colour"] == colour)
        elif qa["kind"] == "size":
            colour, shape = re.match(r"is the (\w+) (\w+) small or large\?", question).groups()
            assert answer == next(o["size"] for o in objects if o["colour"] == colour)
        elif qa["kind"] == "count":
            assert answer == str(len(objects)) and answer in {"1", "2", "3"}
        elif qa["kind"] == "exists":
            colour, shape = re.match(r"is there an? (\w+) (\w+)\?", question).groups()
            present = any(o["colour"] == colour and o["shape"] == shape for o in objects)
            assert answer == ("yes" if present else "no"), question
        elif qa["kind"] == "where":
            where_question = r"where is the (\w+) (\w+) relative to the (\w+) (\w+)\?"
            groups = re.match(where_question, question)
            a = next(k for k, o in enumerate(objects) if o["colour"] == groups.group(1))
            b = next(k for k, o in enumerate(objects) if o["colour"] == groups.group(3))
            relation = true_relation(batch.centre[qa["image_index"], a], batch.centre[qa["image_index"], b])
            assert answer == relation.split()[0] and answer in shapes.WHERE_ANSWERS, question
        else:
            relation_question = r"is the (\w+) (\w+) (left of|right of|above|below) the (\w+) (\w+)\?"
            groups = re.match(relation_question, question)
            a = next(k for k, o in enumerate(objects) if o["colour"] == groups.group(1))
            b = next(k for k, o in enumerate(objects) if o["colour"] == groups.group(4))
            relation = true_relation(batch.centre[qa["image_index"], a], batch.centre[qa["image_index"], b])
            assert answer == ("yes" if relation == groups.group(3) else "no"), question
    assert len(by_kind["exists"]) == 300 and len(by_kind["colour"]) == 300
    assert len(by_kind["relation"]) == len(by_kind["where"]) == int((batch.count >= 2).sum())
    for kind in ("exists", "relation"):
        yes = sum(qa["answer"] == "yes" for qa in by_kind[kind])
        assert abs(yes - len(by_kind[kind]) / 2) <= 1, f"{kind}: {yes} yes of {len(by_kind[kind])}"


def test_questions_are_deterministic():
    batch = shapes.generate(20, seed=4, max_objects=2)
    assert shapes.questions(batch, seed=2) == shapes.questions(batch, seed=2)
    assert shapes.questions(batch, seed=2) != shapes.questions(batch, seed=3)


# ------------------------------------------------------------------------------ web corpus


def test_web_corpus_proportions_and_labels():
    corpus = web_corpus.web_corpus(200, seed=1)
    assert len(corpus) == 200
    assert corpus.counts() == {"clean": 80, "generic": 30, "wrong": 40, "exact_duplicate": 10,
                               "near_duplicate": 10, "url_duplicate": 6, "flagged": 8, "odd_size": 16}
    for i, kind in enumerate(corpus.kind):
        assert corpus.flagged[i] == (kind == "flagged")
        assert (corpus.duplicate_of[i] >= 0) == (kind in web_corpus.DUPLICATE_KINDS)
        height, width = corpus.images[i].shape[1:]
        assert corpus.aspect[i] == pytest.approx(width / height)
        assert torch.equal(corpus.images[i], web_corpus.decode(corpus.image_bytes[i]))
        if kind == "clean":
            assert corpus.alt_text[i] == corpus.true_caption[i]
        elif kind == "generic":
            assert corpus.alt_text[i] in web_corpus.GENERIC_ALT_TEXTS
        elif kind == "wrong":
            assert corpus.alt_text[i] != corpus.true_caption[i]
        elif kind == "odd_size":
            assert max(corpus.aspect[i], 1 / corpus.aspect[i]) >= 3 or max(height, width) <= 12
        else:
            assert (height, width) == (32, 32)


def test_wrong_alt_text_names_other_objects():
    corpus = web_corpus.web_corpus(300, seed=4, max_objects=1)
    for i, kind in enumerate(corpus.kind):
        if kind == "wrong":
            colour = shapes.COLOURS[int(corpus.colour[i, 0])]
            shape = shapes.SHAPES[int(corpus.shape[i, 0])]
            assert f"{colour} {shape}" not in corpus.alt_text[i], (i, corpus.alt_text[i])


def test_web_duplicates_point_at_their_originals():
    corpus = web_corpus.web_corpus(300, seed=2)
    assert [e == "" for e in corpus.edit] == [o < 0 for o in corpus.duplicate_of]
    square = [i for i in range(len(corpus)) if corpus.images[i].shape == (3, 32, 32)]
    for i, original in enumerate(corpus.duplicate_of):
        if original < 0:
            continue
        assert corpus.kind[original] == "clean"
        assert corpus.true_caption[i] == corpus.true_caption[original]
        assert torch.equal(corpus.colour[i], corpus.colour[original])
        same_bytes = corpus.image_bytes[i] == corpus.image_bytes[original]
        assert same_bytes == (corpus.kind[i] == "exact_duplicate")
        assert (corpus.url[i] == corpus.url[original]) == (corpus.kind[i] == "url_duplicate")
        expected_edits = {"exact_duplicate": ("exact",), "url_duplicate": ("re-encoded",),
                          "near_duplicate": web_corpus.NEAR_DUPLICATE_EDITS}[corpus.kind[i]]
        assert corpus.edit[i] in expected_edits
        if corpus.kind[i] != "near_duplicate" or same_bytes:
            gap = float((corpus.images[i] - corpus.images[original]).abs().mean())
            others = [j for j in square if j not in (i, original)]
            nearest = min(float((corpus.images[i] - corpus.images[j]).abs().mean()) for j in others)
            assert gap < 0.05 and gap < nearest, (i, original, gap, nearest)


def test_flagged_images_carry_the_checker_mark():
    corpus = web_corpus.web_corpus(100, seed=3)

    def has_checker(image: torch.Tensor) -> bool:  # an 8x8 patch of pure black and white in a corner
        side = image.shape[-1]
        corners = [image[:, top : top + 8, left : left + 8] for top in (1, side - 9) for left in (1, side - 9)]
        return any(bool(((patch == 0) | (patch == 1)).all()) and patch.std() > 0.4 for patch in corners)

    for i, flagged in enumerate(corpus.flagged):
        if corpus.images[i].shape[1:] == (32, 32):
            assert has_checker(corpus.images[i]) == flagged, i


def test_web_corpus_is_deterministic_and_bad_bytes_get_a_clear_error():
    a, b = web_corpus.web_corpus(40, seed=5), web_corpus.web_corpus(40, seed=5)
    assert a.alt_text == b.alt_text and a.kind == b.kind and a.url == b.url
    assert a.image_bytes == b.image_bytes
    with pytest.raises(ValueError, match="not an image"):
        web_corpus.decode(b"<html>404 not found</html>")


# ------------------------------------------------------------------------------ motion clips


def circular_mean(weights: torch.Tensor, size: int) -> torch.Tensor:
    """Centre of mass (x, y) on a wrap-around image from weights [..., H, W]."""
    angles = 2 * torch.pi * (torch.arange(size) + 0.5) / size
    centre = []
    for axis in (-1, -2):  # x then y
        profile = weights.sum(dim=-2 if axis == -1 else -1)  # [..., size]
        z = (profile * torch.exp(1j * angles)).sum(dim=-1)
        centre.append(torch.remainder(torch.angle(z) / (2 * torch.pi) * size, size))
    return torch.stack(centre, dim=-1)


def test_motion_clips_move_in_the_labelled_direction():
    clips = motion.motion_clips(80, frames=8, seed=2, noise=0.0)
    assert clips.videos.shape == (80, 8, 3, 32, 32) and clips.videos.dtype == torch.float32
    ink = (clips.videos.amax(dim=2) > 0.5).float()  # [N, T, H, W]: objects are bright, backgrounds dark
    seen = circular_mean(ink, 32)  # [N, T, 2]
    wrapped_gap = torch.remainder(seen - clips.centres + 16, 32) - 16
    assert wrapped_gap.abs().max() < 0.75
    step = torch.remainder(clips.centres[:, 1:] - clips.centres[:, :-1] + 16, 32) - 16  # [N, T-1, 2]
    expected = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])[clips.direction]
    assert torch.allclose(step, expected[:, None] * clips.speed[:, None, None], atol=1e-3)
    for i in range(5):
        assert clips.captions[i].endswith(f"moving {motion.DIRECTIONS[int(clips.direction[i])]}")


def test_a_single_frame_carries_no_direction_information():
    clips = motion.motion_clips(2000, frames=4, seed=3, image_size=16)
    for frame in (0, 3):
        for direction in range(4):
            chosen = clips.direction == direction
            mean = clips.centres[chosen, frame].mean(dim=0)
            assert (mean - 8).abs().max() < 1.0, (frame, direction, mean)


def test_motion_clips_are_deterministic_and_subset():
    a, b = motion.motion_clips(6, seed=1), motion.motion_clips(6, seed=1)
    assert torch.equal(a.videos, b.videos) and a.captions == b.captions
    assert not torch.equal(a.videos, motion.motion_clips(6, seed=2).videos)
    part = a.subset([0, 2])
    assert part.videos.shape[0] == 2 and part.captions == [a.captions[0], a.captions[2]]


# ------------------------------------------------------------------------------ datasets, speed


def test_to_hf_dataset_columns():
    pytest.importorskip("datasets")
    batch = shapes.generate(6, seed=0, max_objects=2)
    dataset = convert.to_hf_dataset(batch)
    assert set(dataset.column_names) == {"image", "caption", "colour", "shape", "size", "count"}
    assert len(dataset) == 6
    row = dataset[0]
    assert row["image"].size == (32, 32) and row["caption"] == batch.captions[0]
    assert len(row["colour"]) == row["count"] == int(batch.count[0])
    assert row["colour"][0] == shapes.COLOURS[int(batch.colour[0, 0])]


def test_generation_is_fast_enough():
    # The real figure (tens of thousands of images/s on one core) is in `python -m utils.shapes`;
    # this floor is generous so that a busy CI machine does not make it flaky.
    assert shapes.benchmark(4000, threads=1, repeats=2) >= 2000


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": -3}, "n must be an integer >= 1"),
        ({"n": 2.5}, "n must be an integer"),
        ({"n": 4, "image_size": 8}, "image_size must be between 16 and 128"),
        ({"n": 4, "image_size": 512}, "image_size must be between 16 and 128"),
        ({"n": 4, "min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
        ({"n": 4, "max_objects": 5}, "max_objects <= 4"),
        ({"n": 4, "split": "validation"}, "split must be one of"),
        ({"n": 4, "caption_style": "poetic"}, "caption_style must be one of"),
        ({"n": 4, "noise": -0.1}, "noise"),
        ({"n": 4, "holdout": (("pink", "circle"),)}, "unknown colour 'pink'.*red, green"),
        ({"n": 4, "holdout": (("red", "star"),)}, "unknown shape 'star'"),
        ({"n": 4, "holdout": ("red",)}, "pairs"),
        ({"n": 4, "split": "test", "holdout": ()}, "holdout is empty"),
    ],
)
def test_generate_rejects_bad_input_with_a_helpful_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapes.generate(**kwargs)


def test_other_functions_reject_bad_input():
    batch = shapes.generate(4, seed=0)
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        shapes.describe("teal", "circle")
    with pytest.raises(ValueError, match="needs a colour or a shape"):
        shapes.describe(None, None)
    with pytest.raises(ValueError, match="question kind must be one of"):
        shapes.questions(batch, kinds=("colour", "mood"))
    with pytest.raises(ValueError, match="placeholder"):
        shapes.class_prompts("a photo")
    with pytest.raises(ValueError, match="n must be"):
        web_corpus.web_corpus(0)
    with pytest.raises(ValueError, match="frames must be"):
        motion.motion_clips(4, frames=1)
    with pytest.raises(ValueError, match="out of range"):
        batch.subset(10)
    with pytest.raises(ValueError, match="caption_style"):
        shapes.caption_for(batch, 0, "haiku")
