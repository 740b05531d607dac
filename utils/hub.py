"""Pretrained models for "the real thing" sections, with tiny offline stand-ins of the same class.

Online, `load_pretrained(kind)` downloads the real checkpoint from the Hugging Face hub. Offline (CI,
a plane, `HF_HUB_OFFLINE=1`) it builds a tiny randomly initialised model *of the same class* with a
processor made entirely in code, prints one `[stand-in]` line, and returns it flagged
`is_stand_in=True`. Every call a lesson makes on the real model (processor, forward, `generate`, a
diffusers pipeline) runs on the stand-in too, so the code path stays tested; its outputs are
meaningless and the book never shows them as results.

    loaded = load_pretrained("clip")     # CLIPModel + CLIPProcessor, real or stand-in
    if loaded.is_stand_in: ...           # tag the cell; say in prose what the real model gives

`transformers` and `diffusers` are imported inside the functions: importing this module is cheap and
works without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from utils import runtime, stand_ins

STAND_IN_SEED = 0


@dataclasses.dataclass(frozen=True)
class Kind:
    """What one kind of model is: its default checkpoint, classes, and where the book uses it.

    model_class and processor_class are the classes of the default checkpoint (and of its stand-in);
    load_with names the (model, processor) classes that load a real checkpoint, when they differ.
    """

    default: str
    model_class: str
    processor_class: str
    chapters: str
    about: str
    load_with: tuple[str, str] | None = None

    @property
    def loader_classes(self) -> tuple[str, str]:
        return self.load_with or (self.model_class, self.processor_class)


KINDS: dict[str, Kind] = {
    "clip": Kind(
        "openai/clip-vit-base-patch32", "CLIPModel", "CLIPProcessor", "1, 3",
        "dual encoder; model.get_image_features / get_text_features (their .pooler_output in "
        "transformers 5) give the shared-space vectors, or use clip_embed()",
    ),
    "vit": Kind(
        "google/vit-base-patch16-224", "ViTForImageClassification", "ViTImageProcessor", "2",
        "ImageNet classifier; model.vit(...) is the frozen encoder (197 tokens for a 224 image)",
    ),
    "whisper": Kind(
        "openai/whisper-tiny", "WhisperForConditionalGeneration", "WhisperProcessor", "2, 6",
        "speech recognition; model.get_encoder() is the audio encoder, asr_pipeline() the ASR pipeline; "
        "cap generate with max_length (the checkpoint sets 448; max_new_tokens on top of it warns)",
    ),
    "vlm": Kind(
        "HuggingFaceTB/SmolVLM-256M-Instruct", "Idefics3ForConditionalGeneration", "Idefics3Processor",
        "5, 6",
        "vision-language model with a chat template; image_token_count() says what an image costs",
        # Auto classes, so that any chat VLM checkpoint loads, not only SmolVLM's Idefics3
        load_with=("AutoModelForImageTextToText", "AutoProcessor"),
    ),
    "stable-diffusion": Kind(
        "segmind/tiny-sd", "StableDiffusionPipeline", "CLIPTokenizer", "7",
        "latent diffusion; the pipeline is in .model, its tokenizer in .processor",
    ),
}


@dataclasses.dataclass
class Loaded:
    """A loaded model and how to feed it.

    model: the `transformers` model, or for "stable-diffusion" the whole `diffusers` pipeline.
    processor: the processor (tokenizer + image/audio preprocessing); for "stable-diffusion" the
        pipeline's tokenizer (the pipeline tokenizes prompts itself).
    name: the hub name of the real checkpoint (also for a stand-in: the model it stands in for).
    is_stand_in: True when `model` is a tiny random stand-in; never report its outputs as results.
    note: one human sentence on what was loaded and why.
    """

    model: Any
    processor: Any
    name: str
    is_stand_in: bool
    note: str
    kind: str = ""

    def summary(self) -> str:
        """One line: name, class, parameter count, real or stand-in."""
        modules = [self.model]
        if hasattr(self.model, "components"):  # a diffusers pipeline
            modules = [m for m in self.model.components.values() if isinstance(m, torch.nn.Module)]
        n_params = sum(p.numel() for m in modules for p in m.parameters())
        what = "stand-in, random weights" if self.is_stand_in else "pretrained"
        return f"{self.name}: {type(self.model).__name__}, {n_params / 1e6:.2f} M parameters ({what})"


# ---------------------------------------------------------------------------------------------------
# The public entry point


def load_pretrained(
    kind: str,
    name: str | None = None,
    *,
    device: torch.device | str | None = None,
    offline: bool | None = None,
    dtype: torch.dtype | None = None,
) -> Loaded:
    """Load the real pretrained model of `kind` (see `KINDS`), or its tiny stand-in when offline.

    kind: one of `KINDS` ("clip", "vit", "whisper", "vlm", "stable-diffusion").
    name: a hub checkpoint of the same class; defaults to `KINDS[kind].default`.
    device: where the model goes; default `runtime.pick_device()`.
    offline: None asks `runtime.hub_reachable()` (instant when HF_HUB_OFFLINE=1 or MMBOOK_OFFLINE=1);
        True always builds the stand-in; False tries the hub and falls back to the stand-in, with the
        reason in `note`, only when the download fails (a network or missing-file error).
    dtype: weights' dtype for the real model; default float32, or float16 for diffusion on a GPU.
        Stand-ins are always float32.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {sorted(KINDS)}")
    runtime.need("transformers", f"The real-thing section ({kind})")
    if kind == "stable-diffusion":
        runtime.need("diffusers", "The real-thing section (stable-diffusion)")
    name = name or KINDS[kind].default
    device = torch.device(device) if device is not None else runtime.pick_device()
    if offline is None:
        offline = not runtime.hub_reachable()
    if offline:
        loaded = _stand_in(kind, name, device, reason="offline")
    else:
        loaded = _load_real(kind, name, device, dtype)
    if kind == "whisper":
        _absorb_whisper_generate_notice(loaded.model)
    if kind == "vlm":
        _absorb_default_config_notice(loaded.model)
    return loaded


def _load_real(kind: str, name: str, device: torch.device, dtype: torch.dtype | None) -> Loaded:
    """Download and load the real checkpoint; fall back to the stand-in only when the download fails."""
    try:
        model, processor = _REAL_LOADERS[kind](name, device, dtype or _default_dtype(kind, device))
    except Exception as error:  # only download problems fall back; anything else is a real bug
        if not _is_download_error(error):
            raise
        reason = runtime.error_line(error, limit=120, with_type=False)
        return _stand_in(kind, name, device, reason=f"download failed: {reason}")
    note = f"{name}: pretrained {type(model).__name__} from the Hugging Face hub, on {device}."
    return Loaded(model, processor, name, False, note, kind)


def _default_dtype(kind: str, device: torch.device) -> torch.dtype:
    """float16 for diffusion on a GPU (what everyone runs), float32 otherwise."""
    return torch.float16 if kind == "stable-diffusion" and device.type == "cuda" else torch.float32


def _is_download_error(error: BaseException) -> bool:
    """True for the errors a missing network or a missing file gives (hub, requests, httpx, sockets)."""
    if isinstance(error, (OSError, TimeoutError, ConnectionError)):
        return True
    module = type(error).__module__.split(".")[0]
    return module in {"huggingface_hub", "requests", "httpx", "httpcore", "urllib3"}


def _stand_in(kind: str, name: str, device: torch.device, reason: str) -> Loaded:
    """Build the tiny seeded stand-in of `kind`, say so in one line, and wrap it in `Loaded`."""
    start = time.perf_counter()
    with runtime.isolated_seed(STAND_IN_SEED):
        model, processor = stand_ins.BUILDERS[kind]()
    model = model.to(device)
    class_name = type(model).__name__
    default = KINDS[kind].default
    same = "of the same class" if name == default else f"(the class of {default}; {name} may differ)"
    print(
        f"[stand-in] {name} is not reachable ({reason}); using a tiny randomly initialised {class_name} "
        f"{same} - its outputs are meaningless, the code path is real."
    )
    note = (
        f"stand-in for {name} ({reason}): tiny random {class_name}, built offline in "
        f"{time.perf_counter() - start:.1f} s; outputs are not results."
    )
    return Loaded(model, processor, name, True, note, kind)


@contextlib.contextmanager
def _transformers_verbosity(level: int) -> Iterator[None]:
    """Set transformers' log level for the block only, then put the caller's level back."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(level)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


@torch.no_grad()
def _absorb_whisper_generate_notice(model: Any) -> None:
    """Use up, silently, a notice transformers 5 prints once per process on the first Whisper `generate`.

    Whisper's own `generate` passes a generation config together with `suppress_tokens` keyword
    arguments, and the generic `generate` then warns (once) that this combination is deprecated. The
    notice is about the library's internals, not about anything the reader wrote, and no argument avoids
    it. A one-step generate on silence at load time, with transformers' logging at error level for that
    call only, spends the once here instead of in a lesson's output.
    """
    from transformers.utils import logging as hf_logging

    silence = torch.zeros(1, model.config.num_mel_bins, 3000, device=runtime.device_of(model), dtype=model.dtype)
    with _transformers_verbosity(hf_logging.ERROR):
        model.generate(silence, language="en", task="transcribe", max_length=5)


def _absorb_default_config_notice(model: Any) -> None:
    """Use up, silently, a notice transformers 5.15 prints once on the first `generate` of an Idefics3 model.

    `generate` builds the config class's defaults to compare against, and in transformers 5.15 the default
    Idefics3Config (pad id 128002, default vocabulary of 32000) fails its own validation, which warns once.
    The notice concerns the library's defaults, not the loaded model; building the defaults here with
    transformers' logging at error level spends the once.
    """
    from transformers.utils import logging as hf_logging

    with _transformers_verbosity(hf_logging.ERROR):
        type(model.config)()


# ---------------------------------------------------------------------------------------------------
# Real checkpoints (online)


def dtype_keyword(library: str) -> str:
    """The `from_pretrained` keyword that sets the weights' dtype in the installed `library`.

    transformers 5 and diffusers from 0.40 take `dtype` (diffusers warns that `torch_dtype` is
    deprecated); diffusers before 0.40 (Colab shipped 0.39) ignores `dtype`, with a warning, and takes
    `torch_dtype`.
    """
    if library != "diffusers":
        return "dtype"
    from packaging.version import Version

    release = Version(importlib.metadata.version("diffusers")).release
    return "dtype" if release[:2] >= (0, 40) else "torch_dtype"


def _real_transformers(model_class: str, processor_class: str
                       ) -> Callable[[str, torch.device, torch.dtype], tuple[Any, Any]]:
    """A loader of a transformers checkpoint with these model and processor classes (by name)."""

    def load(name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
        transformers = runtime.need("transformers", "Loading a pretrained model")

        model = getattr(transformers, model_class).from_pretrained(name, **{dtype_keyword("transformers"): dtype})
        return model.to(device).eval(), getattr(transformers, processor_class).from_pretrained(name)

    return load


def _real_stable_diffusion(name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    diffusers = runtime.need("diffusers", "Loading a Stable Diffusion pipeline")

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        name, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        **{dtype_keyword("diffusers"): dtype},
    )
    pipe = pipe.to(device)
    return pipe, pipe.tokenizer


_REAL_LOADERS: dict[str, Callable[[str, torch.device, torch.dtype], tuple[Any, Any]]] = {
    kind: _real_transformers(*info.loader_classes) for kind, info in KINDS.items() if kind != "stable-diffusion"
}
_REAL_LOADERS["stable-diffusion"] = _real_stable_diffusion


# ---------------------------------------------------------------------------------------------------
# Helpers the lessons share


def _as_tensor(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features (vector in .pooler_output); 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_embed(loaded: Loaded, images: list | None = None, texts: list[str] | None = None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """L2-normalised CLIP vectors of `images` (PIL or arrays) and `texts`, as (image_vectors, text_vectors).

    Either may be None. Shapes: (n_images, D) and (n_texts, D); D = 512 for the real ViT-B/32.
    """
    model, processor = loaded.model, loaded.processor
    device = runtime.device_of(model)
    image_vectors = text_vectors = None
    if images is not None:
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device, model.dtype)
        features = _as_tensor(model.get_image_features(pixel_values=pixels))  # (n_images, D)
        image_vectors = torch.nn.functional.normalize(features, dim=-1)
    if texts is not None:
        tokens = processor(text=texts, return_tensors="pt", padding=True).to(device)
        features = _as_tensor(
            model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        )  # (n_texts, D)
        text_vectors = torch.nn.functional.normalize(features, dim=-1)
    return image_vectors, text_vectors


def chat_prompt(loaded: Loaded, question: str, n_images: int = 1) -> str:
    """The VLM's chat-formatted prompt for one user turn: `n_images` image slots, then `question`."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return loaded.processor.apply_chat_template(messages, add_generation_prompt=True)


def image_token_count(loaded: Loaded, image: Any, *, include_layout: bool = False) -> int:
    """How many tokens one image costs the VLM's language model after the processor.

    By default counts the `<image>` placeholders (the slots the vision features fill: 64 per 512-pixel
    tile for SmolVLM-256M). With include_layout=True counts every token the image adds to the prompt,
    including the tile markers, row/column tags and line breaks around them.
    """
    processor = loaded.processor
    prompt = chat_prompt(loaded, "Describe the image.")
    ids = processor(images=[image], text=prompt, return_tensors="pt")["input_ids"][0]
    if include_layout:
        image_token = getattr(processor, "image_token", "<image>")
        text_only = processor.tokenizer(prompt.replace(image_token, ""), return_tensors="pt")["input_ids"][0]
        return int(ids.numel() - text_only.numel())
    image_token_id = getattr(processor, "image_token_id", None)
    if image_token_id is None:
        image_token = getattr(processor, "image_token", "<image>")
        image_token_id = processor.tokenizer.convert_tokens_to_ids(image_token)
    return int((ids == image_token_id).sum())


def asr_pipeline(loaded: Loaded) -> Any:
    """A `transformers` automatic-speech-recognition pipeline around a loaded Whisper (real or stand-in).

    Whisper's generation config sets max_length=448: cap outputs with generate_kwargs={"max_length": n},
    not max_new_tokens (transformers warns when both are set).
    """
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    asr = pipeline(
        "automatic-speech-recognition", model=loaded.model, tokenizer=loaded.processor.tokenizer,
        feature_extractor=loaded.processor.feature_extractor, device=runtime.device_of(loaded.model),
    )
    # transformers 5.15's pipeline passes its own generation config together with the caller's
    # generate_kwargs and warns, once per process, that the combination is deprecated; newer releases
    # merge the two. A first call on a tenth of a second of silence spends that once here.
    with _transformers_verbosity(hf_logging.ERROR):
        asr(np.zeros(1_600, dtype=np.float32), generate_kwargs={"max_length": 5})
    return asr
