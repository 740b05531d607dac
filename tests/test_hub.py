"""utils.hub offline: every kind's stand-in is the real class and its processor works end to end."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils import hub, runtime

ROOT = Path(__file__).resolve().parents[1]

# A notebook stores every warning a cell raises: here any warning fails the test.
pytestmark = pytest.mark.filterwarnings("error")

# The classes the real checkpoints load as (written out here, not read from hub.KINDS, so that a
# wrong entry in KINDS cannot pass its own test).
REAL_CLASSES = {
    "clip": ("CLIPModel", "CLIPProcessor"),
    "vit": ("ViTForImageClassification", "ViTImageProcessor"),
    "whisper": ("WhisperForConditionalGeneration", "WhisperProcessor"),
    "vlm": ("Idefics3ForConditionalGeneration", "Idefics3Processor"),
    "stable-diffusion": ("StableDiffusionPipeline", "CLIPTokenizer"),
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may touch the network: the hub library's own switch is on, and the reachability
    answer is computed afresh under it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runtime.hub_reachable.cache_clear()
    yield
    runtime.hub_reachable.cache_clear()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 224 x 224 RGB image with some structure (a gradient and a square)."""
    ramp = np.linspace(0, 255, 224, dtype=np.float32)
    channels = [np.add.outer(ramp, ramp) / 2, np.tile(ramp, (224, 1)), np.tile(ramp[:, None], (1, 224))]
    pixels = np.stack(channels, axis=-1)
    pixels[60:120, 80:140] = (255, 0, 0)
    return Image.fromarray(pixels.astype(np.uint8))


def load(kind: str, capfd) -> hub.Loaded:
    """The stand-in of `kind` on the CPU, checking that it said so in exactly one line and nothing else."""
    loaded = hub.load_pretrained(kind, offline=True, device="cpu")
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {out!r}"
    assert lines[0].startswith("[stand-in] "), f"expected a [stand-in] line, got {out!r}"
    assert hub.KINDS[kind].default in lines[0] and "same class" in lines[0]
    assert err == "", f"building the {kind} stand-in wrote to stderr: {err!r}"
    return loaded


def assert_quiet(capfd, what: str) -> None:
    out, err = capfd.readouterr()
    assert err == "", f"{what} wrote to stderr (a warning a notebook would store): {err!r}"


@pytest.mark.parametrize("kind", sorted(REAL_CLASSES))
def test_stand_in_is_the_real_class(kind, capfd):
    loaded = load(kind, capfd)
    model_class, processor_class = REAL_CLASSES[kind]
    assert type(loaded.model).__name__ == model_class == hub.KINDS[kind].model_class
    assert type(loaded.processor).__name__ == processor_class == hub.KINDS[kind].processor_class
    assert loaded.is_stand_in and loaded.name == hub.KINDS[kind].default and loaded.kind == kind
    assert "stand-in" in loaded.note and "offline" in loaded.note
    assert "stand-in" in loaded.summary()


def test_vlm_stand_in_is_what_the_auto_class_gives_for_its_config(capfd):
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: F401 (AutoProcessor: real path)

    loaded = load("vlm", capfd)
    auto_model = AutoModelForImageTextToText.from_config(loaded.model.config)
    assert type(auto_model) is type(loaded.model)


def test_stand_ins_are_seeded_and_leave_the_callers_random_state_alone(capfd):
    torch.manual_seed(123)
    first = hub.load_pretrained("clip", offline=True, device="cpu").model
    after_first = torch.rand(3)
    torch.manual_seed(123)
    second = hub.load_pretrained("clip", offline=True, device="cpu").model
    after_second = torch.rand(3)
    capfd.readouterr()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"stand-in weight {name} differs between two builds"
    torch.manual_seed(123)
    assert torch.equal(after_first, torch.rand(3)), "building a stand-in consumed the caller's random numbers"
    assert torch.equal(after_first, after_second)


@pytest.mark.parametrize("kind", sorted(REAL_CLASSES))
def test_stand_ins_build_fast(kind, capfd):
    hub.load_pretrained(kind, offline=True, device="cpu")  # first build imports the library's modules
    start = time.perf_counter()
    hub.load_pretrained(kind, offline=True, device="cpu")
    seconds = time.perf_counter() - start
    capfd.readouterr()
    assert seconds < 5, f"the {kind} stand-in took {seconds:.1f} s to build"


def test_clip_features_and_zero_shot_logits(photo, capfd):
    loaded = load("clip", capfd)
    model, processor = loaded.model, loaded.processor
    batch = processor(text=["a red square", "a blue circle"], images=photo, return_tensors="pt", padding=True)
    assert batch["pixel_values"].shape == (1, 3, 224, 224)
    with torch.no_grad():
        image_out = model.get_image_features(pixel_values=batch["pixel_values"])
        text_out = model.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        logits = model(**batch).logits_per_image
    dim = model.config.projection_dim
    assert hub._as_tensor(image_out).shape == (1, dim)
    assert hub._as_tensor(text_out).shape == (2, dim)
    assert logits.shape == (1, 2)
    image_vectors, text_vectors = hub.clip_embed(loaded, [photo, photo], ["a red square", "a blue circle"])
    assert image_vectors.shape == (2, dim) and text_vectors.shape == (2, dim)
    torch.testing.assert_close(image_vectors.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(text_vectors.norm(dim=-1), torch.ones(2))
    decoded = processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert decoded == "a red square"
    assert_quiet(capfd, "CLIP")


def test_vit_forward_on_a_processed_image(photo, capfd):
    loaded = load("vit", capfd)
    pixels = loaded.processor(images=photo.resize((300, 200)), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224)
    with torch.no_grad():
        out = loaded.model(pixel_values=pixels, output_hidden_states=True)
        encoder = loaded.model.vit(pixel_values=pixels).last_hidden_state
    hidden = loaded.model.config.hidden_size
    assert out.logits.shape == (1, loaded.model.config.num_labels)
    assert out.hidden_states[-1].shape == encoder.shape == (1, 197, hidden)  # CLS + 14 x 14 patches
    assert_quiet(capfd, "ViT")


def test_whisper_features_encoder_generate_and_pipeline(capfd):
    loaded = load("whisper", capfd)
    model, processor = loaded.model, loaded.processor
    one_second = np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000).astype(np.float32)
    features = processor(one_second, sampling_rate=16_000, return_tensors="pt")["input_features"]
    assert features.shape == (1, 80, 3000)  # 80 mel bins x 30 s padded at 100 frames a second
    with torch.no_grad():
        encoded = model.get_encoder()(features).last_hidden_state
        tokens = model.generate(features, language="en", task="transcribe", max_length=8)
    assert encoded.shape == (1, 1500, model.config.d_model)
    assert tokens.dtype == torch.long and tokens.shape[0] == 1 and tokens.shape[1] <= 8
    assert isinstance(processor.batch_decode(tokens, skip_special_tokens=True)[0], str)
    tokenizer, generation = processor.tokenizer, model.generation_config
    ids = tokenizer("hi").input_ids
    assert tokenizer.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<|startoftranscript|>", "<|endoftext|>"]
    assert generation.lang_to_id["<|en|>"] == tokenizer.convert_tokens_to_ids("<|en|>")
    assert generation.no_timestamps_token_id == tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    result = hub.asr_pipeline(loaded)(one_second, generate_kwargs={"max_length": 8})
    assert isinstance(result["text"], str)
    assert_quiet(capfd, "Whisper")


def test_vlm_chat_template_processor_generate(photo, capfd):
    loaded = load("vlm", capfd)
    model, processor = loaded.model, loaded.processor
    prompt = hub.chat_prompt(loaded, "What colour is the square?")
    assert prompt.startswith("<|im_start|>User:<image>What colour is the square?")
    assert prompt.endswith("Assistant:")
    batch = processor(images=[photo], text=prompt, return_tensors="pt")
    tiles = batch["pixel_values"].shape[1]
    assert batch["pixel_values"].shape[2:] == (3, 512, 512) and tiles == 17  # 4 x 4 tiles + the global view
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 3
    assert isinstance(processor.batch_decode(out, skip_special_tokens=True)[0], str)
    assert hub.image_token_count(loaded, photo) == 64 * tiles
    assert hub.image_token_count(loaded, photo, include_layout=True) > 64 * tiles
    assert_quiet(capfd, "the VLM")


def test_stable_diffusion_two_steps_make_an_image(capfd):
    loaded = load("stable-diffusion", capfd)
    pipe = loaded.model
    assert loaded.processor is pipe.tokenizer

    def draw():
        generator = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=2, guidance_scale=7.5, generator=generator).images[0]

    image = draw()
    assert isinstance(image, Image.Image) and image.size == (64, 64) and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(draw())), "same seed, different image"
    assert_quiet(capfd, "the diffusion pipeline")


def test_stable_diffusion_scheduler_swap_and_guidance_sweep(capfd):
    """Chapter 7's real-thing cell: the scheduler swapped by from_config, guidance scales 1 to 15."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    loaded = load("stable-diffusion", capfd)
    pipe = loaded.model
    for scale in (1.0, 7.5, 15.0):
        image = pipe("a red circle", num_inference_steps=2, guidance_scale=scale,
                     generator=torch.Generator().manual_seed(0)).images[0]
        assert image.size == (64, 64)
    for scheduler_class in (DDIMScheduler, EulerDiscreteScheduler):
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
        assert isinstance(pipe.scheduler, scheduler_class)
        with warnings.catch_warnings():  # diffusers' Euler calls np.array on a tensor: numpy 2 warns
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            image = pipe("a red circle", num_inference_steps=2, guidance_scale=7.5,
                         generator=torch.Generator().manual_seed(0)).images[0]
        assert isinstance(image, Image.Image) and image.size == (64, 64)
    assert_quiet(capfd, "the scheduler swap")


def test_offline_none_with_hf_hub_offline_takes_the_stand_in_without_touching_the_network(monkeypatch, capfd):
    def no_network(*args, **kwargs):
        raise AssertionError("hub.load_pretrained opened a network connection although HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket, "create_connection", no_network)
    hub.load_pretrained("vit", offline=True, device="cpu")  # warm the imports
    capfd.readouterr()
    start = time.perf_counter()
    loaded = hub.load_pretrained("vit", device="cpu")
    seconds = time.perf_counter() - start
    out, _ = capfd.readouterr()
    assert loaded.is_stand_in and out.count("[stand-in]") == 1
    assert seconds < 2, f"offline=None took {seconds:.1f} s with HF_HUB_OFFLINE=1"


def test_a_failed_download_falls_back_with_the_reason(monkeypatch, capfd):
    def failing(name, device, dtype):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.setitem(hub._REAL_LOADERS, "vit", failing)
    loaded = hub.load_pretrained("vit", offline=False, device="cpu")
    out, _ = capfd.readouterr()
    assert loaded.is_stand_in and "download failed" in loaded.note and "couldn't connect" in loaded.note
    assert out.count("[stand-in]") == 1 and "download failed" in out


def test_other_loading_errors_are_not_hidden(monkeypatch):
    def broken(name, device, dtype):
        raise ValueError("a real bug")

    monkeypatch.setitem(hub._REAL_LOADERS, "vit", broken)
    with pytest.raises(ValueError, match="a real bug"):
        hub.load_pretrained("vit", offline=False, device="cpu")


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="stable-diffusion"):
        hub.load_pretrained("gpt-9")


def test_importing_hub_does_not_import_the_big_libraries():
    code = "import sys, utils.hub; bad = {'transformers', 'diffusers'} & set(sys.modules); assert not bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.mark.parametrize(("version", "keyword"), [("0.39.0", "torch_dtype"), ("0.39rc1", "torch_dtype"),
                                                  ("0.40.0", "dtype"), ("0.42.1", "dtype"), ("1.0.0.dev0", "dtype")])
def test_diffusers_gets_the_dtype_keyword_its_version_reads(monkeypatch, version, keyword):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    assert hub.dtype_keyword("diffusers") == keyword
    assert hub.dtype_keyword("transformers") == "dtype"


def test_real_stable_diffusion_passes_the_dtype_under_the_right_name(monkeypatch):
    import diffusers

    seen = {}

    class FakePipeline:
        tokenizer = "tokenizer"

        @classmethod
        def from_pretrained(cls, name, **kwargs):
            seen.update(kwargs)
            return cls()

        def to(self, device):
            return self

    monkeypatch.setattr(diffusers, "StableDiffusionPipeline", FakePipeline)
    hub._real_stable_diffusion("some/model", torch.device("cpu"), torch.float16)
    assert seen[hub.dtype_keyword("diffusers")] is torch.float16 and len(seen) == 4
