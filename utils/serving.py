"""A small production-style model server for chapter 10: the book's tiny models behind HTTP, with dynamic
batching, an LRU cache, input limits, timeouts, and the client helpers a notebook needs to start it,
load-test it and stop it.

The server (a FastAPI app; start it with `python -m uvicorn utils.serving:app`, or with `serve()`)
loads the zoo's tiny CLIP, TinyVLM and tiny ASR once, on the CPU, from the zoo's cache (it never trains:
a missing model stops the startup with a message). Endpoints:

    GET  /health          {"status": "ok", settings, cache and batch statistics, request counts}
    POST /embed/text      JSON {"text": str} -> {"vector": [64 floats], "unknown_words": [...]}
    POST /embed/image     PNG or JPEG bytes -> {"vector": [64 floats]} (the image is resized to 32x32 RGB)
    POST /search          JSON {"query": str, "k": int} -> {"page_ids", "scores"}: MaxSim over the page
                          index in the .npz named by $MMBOOK_INDEX (503 when there is none)
    POST /answer?question=...   PNG or JPEG bytes -> {"answer": str} from the TinyVLM (image 32x32 RGB)
    POST /transcribe      16-bit PCM mono 16 kHz WAV bytes -> {"text": str} from the tiny ASR
    PUT  /settings        JSON {"batching", "cache", "max_batch", "max_wait_ms", "timeout_s"} (any of them)
                          -> the new settings; clears the caches and the counters

Every refused request gets {"detail": "<what was wrong and the limit>"} with a 4xx status; a request that
runs past `timeout_s` gets 504. The limits are the constants below.

Client side: `serve()` starts the server in a child process and always stops it, `load_test()` sends
requests concurrently and reports latency percentiles and throughput, `png_bytes()` and `wav_bytes()`
make request bodies. Importing this module needs neither FastAPI nor httpx: `app` is built on first use.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' type hints at run time, and
# the endpoints are defined inside `create_app` (where postponed, string annotations could not be resolved).

import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from utils import runtime, speech, tiny_clip, tiny_vlm, zoo
from utils.sound import SAMPLE_RATE

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")
R = TypeVar("R")

# ---------------------------------------------------------------------------------------------------
# Limits and names

MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MB
MAX_IMAGE_SIDE = 4096
MAX_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE  # checked from the header, before any pixel is decoded
IMAGE_SIZE = 32  # every image is resized to 32x32 RGB, the size the tiny models read
IMAGE_TYPES = ("image/png", "image/jpeg")
AUDIO_TYPES = ("audio/wav", "audio/x-wav", "audio/wave")
MAX_TEXT_CHARS = 200
MAX_PHRASES = 8  # a search query is at most 8 phrases joined by " and "
MAX_K = 100
MAX_NEW_TOKENS = 20  # the longest answer the TinyVLM may write
MIN_AUDIO_SECONDS, MAX_AUDIO_SECONDS = 0.1, 10.0
CACHE_SIZE = 10_000  # entries per cache
INDEX_ENV = "MMBOOK_INDEX"  # the page index for /search: an .npz file
THREADS_ENV = "MMBOOK_SERVE_THREADS"  # torch's CPU threads in the server process
SERVED_MODELS = ("tiny_clip", "tiny_vlm", "tiny_asr")
_WORD = re.compile(r"[a-z]+")  # what tiny_clip.tokenize reads as words


class RequestError(Exception):
    """A request the server refuses or cannot finish: an HTTP status and a message for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


# ---------------------------------------------------------------------------------------------------
# Dynamic batching


class BatcherStopped(RuntimeError):
    """What a request waiting in a DynamicBatcher hears when the batcher stops."""


class DynamicBatcher(Generic[T, R]):
    """Groups concurrent requests into batches, so that one model call serves many callers.

    `await submit(item)` queues an item and waits for its result. A worker task takes the first waiting
    item, then keeps collecting until it holds `max_batch` items or `max_wait_ms` have passed since the
    first (after that it still takes what is already queued, without waiting), calls
    `run_batch(items) -> results` once (same length, same order) and hands each caller its own result;
    if run_batch raises, every caller of that batch gets the exception. Runs inside an event loop, between
    `await start()` and `await stop()`.
    """

    def __init__(self, run_batch: Callable[[list[T]], list[R]], max_batch: int = 32,
                 max_wait_ms: float = 5.0) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_ms / 1000
        self.batch_sizes: list[int] = []  # one entry per run_batch call
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        if self._worker is None:
            raise RuntimeError("the batcher is not running: await its start() first")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            try:
                deadline = loop.time() + self.max_wait_s
                while len(batch) < self.max_batch:
                    left = deadline - loop.time()
                    try:
                        batch.append(self._queue.get_nowait() if left <= 0
                                     else await asyncio.wait_for(self._queue.get(), left))
                    except (asyncio.QueueEmpty, asyncio.TimeoutError):
                        break
                batch = [(item, future) for item, future in batch if not future.done()]  # skip who timed out
                if batch:
                    self.batch_sizes.append(len(batch))
                    await self._run([item for item, _ in batch], [future for _, future in batch])
            except asyncio.CancelledError:  # stop(): the callers held in this batch hear it, then it ends
                _fail([future for _, future in batch], BatcherStopped("the batcher was stopped"))
                raise

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            # In a worker thread, not on the event loop: the model call is blocking CPU work, and torch
            # releases the GIL inside its kernels, so the loop keeps accepting requests (the next batch
            # fills meanwhile), answering /health and firing timeouts. The cost: a thread hop, ~0.1 ms.
            results = await asyncio.to_thread(self.run_batch, items)
            if len(results) != len(items):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        except Exception as error:  # the model failed: every caller of the batch hears why
            _fail(futures, error)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # a caller that timed out has cancelled its future
                future.set_result(result)

    async def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():  # whoever still waits gets an answer too
            _fail([self._queue.get_nowait()[1]], BatcherStopped("the batcher was stopped"))


def _fail(futures: Sequence[asyncio.Future], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


# ---------------------------------------------------------------------------------------------------
# Caching


class EmbeddingCache:
    """A least-recently-used cache (key -> value) of at most `max_size` entries, counting hits and misses.

    Keys are strings: `text_key(text)`, `image_key(data)` (sha256 of the bytes), or any string. Not
    thread-safe: the server uses it from its event loop only.
    """

    def __init__(self, max_size: int = CACHE_SIZE) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str) -> Any | None:
        """The value stored under `key` (now the most recently used), or None; counts a hit or a miss."""
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        """Store `value`; past `max_size` entries, the least recently used one goes."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        self._entries.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, float]:
        """size, max_size, hits, misses and hit_rate (hits over lookups; 0 before any lookup)."""
        lookups = self.hits + self.misses
        return {"size": len(self), "max_size": self.max_size, "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else 0.0}


def text_key(text: str) -> str:
    """Cache key of a text: its words as the tiny CLIP reads them (lower case, letters only)."""
    return "text:" + " ".join(_WORD.findall(text.lower()))


def image_key(data: bytes) -> str:
    """Cache key of an image: the sha256 of its file's bytes."""
    return "image:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Late-interaction search


def maxsim_scores(query: np.ndarray, patches: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """ColBERT/ColPali late-interaction scores: query [Q, D], patches [P, M, D], mask [P, M] -> [P].

    A page's score is the sum over the query's Q vectors of the best dot product with any of its
    patches; `mask` (bool) says which of a page's M patch rows are real (None: all). A page without
    any real patch scores -inf.
    """
    query, patches = np.asarray(query, dtype=np.float32), np.asarray(patches, dtype=np.float32)
    if query.ndim != 2 or patches.ndim != 3 or query.shape[1] != patches.shape[2]:
        raise ValueError(f"need query [Q, D] and patches [P, M, D], got {query.shape} and {patches.shape}")
    similarity = np.einsum("qd,pmd->pqm", query, patches)  # [P, Q, M]
    if mask is not None:
        if np.shape(mask) != patches.shape[:2]:
            raise ValueError(f"mask must be [P, M] = {patches.shape[:2]}, got {np.shape(mask)}")
        similarity = np.where(np.asarray(mask, dtype=bool)[:, None, :], similarity, -np.inf)
    return similarity.max(axis=2).sum(axis=1)  # [P]


@dataclasses.dataclass(frozen=True)
class PageIndex:
    """The pages /search ranks: patch vectors float32 [P, M, D], mask bool [P, M] or None, P page ids."""

    patch_vectors: np.ndarray
    patch_mask: np.ndarray | None
    page_ids: list
    path: str


def load_index(path: str | Path) -> PageIndex:
    """Read and check an .npz page index: `patch_vectors` float [P, M, 64] (unit rows, zero rows allowed
    where `patch_mask` [P, M] is False), `page_ids` [P], optional `patch_mask`. ValueError says what is
    wrong."""
    where = f"the page index {path} (${INDEX_ENV})"
    if not Path(path).is_file():
        raise ValueError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {name: arrays[name] for name in arrays.files}
    except Exception as error:  # a zip error, a pickled object array, ...: all mean "not a plain .npz"
        problem = runtime.error_line(error)
        raise ValueError(f"{where}: cannot read it as an .npz of plain arrays ({problem})") from error
    for name in ("patch_vectors", "page_ids"):
        if name not in found:
            has = ", ".join(sorted(found)) or "none"
            raise ValueError(f"{where}: it has no {name!r} array (it has: {has})")
    vectors, ids, mask = found["patch_vectors"], found["page_ids"], found.get("patch_mask")
    if vectors.ndim != 3 or vectors.shape[2] != tiny_clip.EMBED_DIM or 0 in vectors.shape:
        raise ValueError(f"{where}: patch_vectors must be [pages, patches, {tiny_clip.EMBED_DIM}], "
                         f"got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{where}: patch_vectors holds NaN or infinite values")
    if ids.dtype.kind not in "iuU":
        raise ValueError(f"{where}: page_ids must be integers or strings, got dtype {ids.dtype}")
    if ids.shape != vectors.shape[:1]:
        raise ValueError(f"{where}: page_ids must be [{len(vectors)}] (one per page), got {ids.shape}")
    if mask is not None:
        if mask.dtype != bool or mask.shape != vectors.shape[:2]:
            raise ValueError(f"{where}: patch_mask must be bool {vectors.shape[:2]}, "
                             f"got {mask.dtype} {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError(f"{where}: pages {np.flatnonzero(~mask.any(axis=1))[:5].tolist()} have no patch")
    return PageIndex(vectors.astype(np.float32), mask, ids.tolist(), str(path))


# ---------------------------------------------------------------------------------------------------
# Inputs: texts, images, audio


def _check_length(text: str, what: str) -> None:
    if not text.strip():
        raise RequestError(422, f"{what} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise RequestError(422, f"{what} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")


def check_text(text: str, what: str = "text") -> tuple[list[str], list[str]]:
    """The tiny CLIP's words of `text` and those it does not know (they become <unk>); RequestError 422
    for empty text, more than MAX_TEXT_CHARS characters, or more words than tiny_clip.MAX_TOKENS
    (tokenize would silently drop the rest)."""
    _check_length(text, what)
    words = _WORD.findall(text.lower())
    if not words:
        raise RequestError(422, f"{what} has no words the tiny CLIP reads (it reads the letters a-z): "
                                f"{text!r}")
    if len(words) > tiny_clip.MAX_TOKENS:
        raise RequestError(422, f"{what} has {len(words)} words; the tiny CLIP reads at most "
                                f"{tiny_clip.MAX_TOKENS} (it would silently drop the rest)")
    unknown = list(dict.fromkeys(w for w in words if w not in tiny_clip.WORD_INDEX))
    return words, unknown


def max_question_tokens(vlm: tiny_vlm.TinyVLM) -> int:
    """The longest question the TinyVLM can take: its positions minus the image tokens, the answer's
    MAX_NEW_TOKENS and <bos> <sep> (the <image> placeholder is replaced by the image tokens)."""
    return vlm.lm.position.num_embeddings - vlm.grid**2 - MAX_NEW_TOKENS - 1


def check_question(question: str, limit: int) -> tuple[list[str], list[str]]:
    """The TinyVLM's tokens of `question` and its unknown words; RequestError 422 if empty or too long."""
    _check_length(question, "question")
    tokens = tiny_vlm.words(question)
    if not tokens:
        raise RequestError(422, f"question has no words the TinyVLM reads: {question!r}")
    if len(tokens) > limit:
        raise RequestError(422, f"question has {len(tokens)} tokens; the TinyVLM takes at most {limit}")
    return tokens, list(dict.fromkeys(t for t in tokens if t not in tiny_vlm.TOKEN_ID))


def open_image(data: bytes) -> Image.Image:
    """Open PNG/JPEG bytes lazily (the header only) and check the size before any pixel is decoded:
    RequestError 400 for bytes PIL cannot read, 413 for more than MAX_PIXELS pixels."""
    limit = f"the limit is {MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE} = {MAX_PIXELS:,} pixels"
    with warnings.catch_warnings():
        # PIL warns above 89M pixels (and raises above twice that); the check below is stricter
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise RequestError(413, f"the image is too large ({runtime.error_line(error, with_type=False)}); "
                                    f"{limit}") from error
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise RequestError(400, f"cannot decode the image: {runtime.error_line(error)}") from error
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise RequestError(413, f"the image is {width} x {height} = {width * height:,} pixels; {limit}")
    return image


def image_tensor(image: Image.Image) -> torch.Tensor:
    """Decode the pixels, convert to RGB and resize to IMAGE_SIZE x IMAGE_SIZE (bilinear):
    float32 [3, 32, 32] in [0, 1]. RequestError 400 when the pixel data is broken (e.g. truncated)."""
    try:
        small = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    except Exception as error:  # truncated or corrupt data surfaces here, in many error types
        raise RequestError(400, f"cannot decode the image: {runtime.error_line(error)}") from error
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def decode_image(data: bytes) -> torch.Tensor:
    """PNG/JPEG bytes -> float32 [3, 32, 32] in [0, 1] (`open_image`, then `image_tensor`)."""
    return image_tensor(open_image(data))


def decode_wav(data: bytes) -> torch.Tensor:
    """16-bit PCM mono 16 kHz WAV bytes -> float32 waveform [S] in [-1, 1]. RequestError: 400 for bytes
    that are not a readable WAV, 422 for another rate, channel count or sample width, or near-silence of
    length, 413 for more than MAX_AUDIO_SECONDS."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            pcm = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, ValueError) as error:
        raise RequestError(400, f"cannot read the WAV: {runtime.error_line(error)}; send a 16-bit PCM mono "
                                f"WAV file (Content-Type audio/wav)") from error
    if rate != SAMPLE_RATE:
        raise RequestError(422, f"audio must be {SAMPLE_RATE} Hz mono, got {rate} Hz; resample it first "
                                f"(e.g. torchaudio.functional.resample)")
    if channels != 1:
        raise RequestError(422, f"audio must be mono, got {channels} channels; mix them down first "
                                f"(e.g. waveform.mean(0))")
    if width != 2:
        raise RequestError(422, f"audio must be 16-bit PCM, got {8 * width}-bit samples")
    seconds = len(pcm) / 2 / SAMPLE_RATE
    if seconds > MAX_AUDIO_SECONDS:
        raise RequestError(413, f"audio is {seconds:.1f} s long; the limit is {MAX_AUDIO_SECONDS:g} s "
                                f"(cut it into pieces)")
    if seconds < MIN_AUDIO_SECONDS:
        raise RequestError(422, f"audio is {seconds:.3f} s long; at least {MIN_AUDIO_SECONDS:g} s is needed")
    return torch.from_numpy(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768)


# ---------------------------------------------------------------------------------------------------
# The models and their batch functions


@dataclasses.dataclass
class Models:
    """The three models the server runs (in eval mode, on the CPU) and where each came from."""

    clip: tiny_clip.TinyCLIP
    vlm: tiny_vlm.TinyVLM
    asr: speech.TinyASR
    about: dict[str, str]


def load_zoo_models() -> Models:
    """The zoo's tiny CLIP, TinyVLM and tiny ASR from the zoo's cache, on the CPU. Never trains:
    RuntimeError when a model is not cached (or the cache is unusable), saying how to fix it."""
    loaded, about = {}, {}
    for name in SERVED_MODELS:
        entry = zoo._entry(name)  # the registered version and builder (with a reader's override)
        weights, meta_path = zoo.paths(name, entry.version)
        try:
            # zoo.load trains on a cache miss; _load_cached is its cache-only half (CacheProblem on a miss)
            model, meta = zoo._load_cached(entry.build, weights, meta_path)
        except zoo.CacheProblem as problem:
            raise RuntimeError(
                f"the server never trains, and the zoo has no usable {name} {entry.version} ({problem}: "
                f"{weights}). Run zoo.load({name!r}) once (it trains and caches it), then start the server "
                f"again"
            ) from problem
        loaded[name] = model.to("cpu").eval()
        about[name] = f"{entry.version}, trained {meta.get('date', '?')[:10]}"
    return Models(loaded["tiny_clip"], loaded["tiny_vlm"], loaded["tiny_asr"], about)


@torch.inference_mode()
def embed_texts(clip: tiny_clip.TinyCLIP, texts: list[str]) -> list[np.ndarray]:
    """Unit text vectors, one float32 [64] per text (checked by `check_text`)."""
    return list(clip.encode_text(tiny_clip.tokenize(texts)).numpy())


@torch.inference_mode()
def embed_images(clip: tiny_clip.TinyCLIP, images: list[torch.Tensor]) -> list[np.ndarray]:
    """Unit image vectors, one float32 [64] per image [3, 32, 32]."""
    return list(clip.encode_image(torch.stack(images)).numpy())


def answer_batch(vlm: tiny_vlm.TinyVLM, items: list[tuple[torch.Tensor, str]]) -> list[str]:
    """TinyVLM answers for (image [3, 32, 32], question) pairs. Questions of one token length run as one
    batch (tiny_vlm.generate batches only prompts of equal length; others it runs one by one)."""
    answers = [""] * len(items)
    groups: defaultdict[int, list[int]] = defaultdict(list)
    for i, (_, question) in enumerate(items):
        groups[len(tiny_vlm.words(question))].append(i)
    for rows in groups.values():
        images = torch.stack([items[i][0] for i in rows])
        said = tiny_vlm.answer(vlm, images, [items[i][1] for i in rows], MAX_NEW_TOKENS)
        for i, text in zip(rows, said, strict=True):
            answers[i] = text
    return answers


def transcribe_one(asr: speech.TinyASR, waveform: torch.Tensor) -> str:
    """The tiny ASR's transcript of one 16 kHz waveform [S]."""
    return speech.recognise(asr, [waveform])[0]


# ---------------------------------------------------------------------------------------------------
# The server's state and work (no HTTP here: `create_app` maps it to endpoints)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What PUT /settings changes. ValueError for values out of range."""

    batching: bool = True
    cache: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= 1024:
            raise ValueError(f"max_batch must be between 1 and 1024, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms}")
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"timeout_s must be above 0 and at most 600, got {self.timeout_s}")


class ModelServer:
    """Models, settings, caches, batchers and counters, and one async method per endpoint. Methods raise
    RequestError for what the client should hear. Lives on one event loop (nothing here is locked)."""

    def __init__(self, models: Models, index: PageIndex | None = None,
                 settings: Settings | None = None) -> None:
        self.models, self.index, self.settings = models, index, settings or Settings()
        self.question_limit = max_question_tokens(models.vlm)
        self.run_batch: dict[str, Callable[[list], list]] = {
            "text": partial(embed_texts, models.clip),
            "image": partial(embed_images, models.clip),
            "answer": partial(answer_batch, models.vlm),
        }
        self.caches = {kind: EmbeddingCache(CACHE_SIZE) for kind in self.run_batch}
        self.batchers: dict[str, DynamicBatcher] = {}
        self.requests: Counter[tuple[str, int]] = Counter()  # (method and path, status) -> count
        self.batch_sizes: dict[str, list[int]] = {kind: [] for kind in self.run_batch}

    async def start(self) -> None:
        if self.settings.batching:
            for kind, run in self.run_batch.items():
                self.batchers[kind] = DynamicBatcher(run, self.settings.max_batch, self.settings.max_wait_ms)
                self.batchers[kind].batch_sizes = self.batch_sizes[kind]  # one record across restarts
                await self.batchers[kind].start()

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.batchers = {}

    async def change(self, **changes: Any) -> Settings:
        """New settings (unnamed ones kept); caches, batch records and request counts start afresh."""
        try:
            settings = dataclasses.replace(self.settings, **changes)
        except ValueError as error:
            raise RequestError(422, str(error)) from error
        await self.stop()
        self.settings = settings
        for cache in self.caches.values():
            cache.clear()
        for sizes in self.batch_sizes.values():
            sizes.clear()
        self.requests.clear()
        await self.start()
        return settings

    async def within_timeout(self, work: Awaitable[T]) -> T:
        """`work`, or RequestError 504 when it takes longer than settings.timeout_s."""
        timeout = self.settings.timeout_s
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            raise RequestError(504, f"the request took longer than {timeout:g} s (the server's timeout_s; "
                                    f"PUT /settings changes it)") from None

    async def _run(self, kind: str, item: Any) -> Any:
        """One item through the model: via the batcher when batching is on, else alone in a thread."""
        try:
            if kind in self.batchers:
                return await self.batchers[kind].submit(item)
            return (await asyncio.to_thread(self.run_batch[kind], [item]))[0]
        except BatcherStopped as error:
            detail = "the server's settings changed while this request waited; send it again"
            raise RequestError(503, detail) from error
        except Exception as error:
            raise RequestError(500, f"the model failed: {runtime.error_line(error)}") from error

    def _lookup(self, kind: str, key: str) -> Any | None:
        return self.caches[kind].get(key) if self.settings.cache else None

    def _store(self, kind: str, key: str, value: Any) -> None:
        if self.settings.cache:
            self.caches[kind].put(key, value)

    async def _image(self, data: bytes) -> torch.Tensor:
        image = open_image(data)  # the header only: cheap, on the event loop
        if image.size[0] * image.size[1] <= 256 * 256:
            return image_tensor(image)  # a small image decodes faster than a thread hop
        return await asyncio.to_thread(image_tensor, image)  # a large one would hold the loop up

    async def _text_vector(self, text: str) -> tuple[np.ndarray, bool]:
        key = text_key(text)
        vector = self._lookup("text", key)
        if vector is not None:
            return vector, True
        vector = await self._run("text", key.removeprefix("text:"))
        self._store("text", key, vector)
        return vector, False

    async def embed_text(self, text: str) -> dict:
        _, unknown = check_text(text)
        vector, cached = await self._text_vector(text)
        return {"vector": vector.tolist(), "unknown_words": unknown, "cached": cached}

    async def embed_image(self, data: bytes) -> dict:
        key = image_key(data)
        vector, cached = self._lookup("image", key), True
        if vector is None:
            vector, cached = await self._run("image", await self._image(data)), False
            self._store("image", key, vector)
        return {"vector": vector.tolist(), "cached": cached}

    async def answer(self, data: bytes, question: str) -> dict:
        tokens, unknown = check_question(question, self.question_limit)
        key = f"answer:{image_key(data)}:{' '.join(tokens)}"
        said, cached = self._lookup("answer", key), True
        if said is None:
            said, cached = await self._run("answer", (await self._image(data), " ".join(tokens))), False
            self._store("answer", key, said)
        return {"answer": said, "unknown_words": unknown, "cached": cached}

    async def search(self, query: str, k: int) -> dict:
        if self.index is None:
            raise RequestError(503, f"search is off: no page index was given (start the server with "
                                    f"{INDEX_ENV}=<an .npz with patch_vectors and page_ids>)")
        _check_length(query, "query")
        phrases = re.split(r"\s+and\s+", query.strip(), flags=re.IGNORECASE)
        if len(phrases) > MAX_PHRASES:
            raise RequestError(422, f"query has {len(phrases)} phrases; the limit is {MAX_PHRASES}")
        unknown: list[str] = []
        for i, phrase in enumerate(phrases, start=1):
            unknown += check_text(phrase, f"phrase {i} of the query ({phrase!r})")[1]
        found = await asyncio.gather(*(self._text_vector(phrase) for phrase in phrases))
        scores = maxsim_scores(np.stack([vector for vector, _ in found]), self.index.patch_vectors,
                               self.index.patch_mask)  # [P]
        best = np.argsort(-scores, kind="stable")[:k]
        return {"page_ids": [self.index.page_ids[i] for i in best], "scores": scores[best].tolist(),
                "phrases": phrases, "unknown_words": list(dict.fromkeys(unknown))}

    async def transcribe(self, data: bytes) -> dict:
        waveform = decode_wav(data)
        try:
            text = await asyncio.to_thread(transcribe_one, self.models.asr, waveform)
        except Exception as error:
            raise RequestError(500, f"the model failed: {runtime.error_line(error)}") from error
        return {"text": text, "seconds": round(len(waveform) / SAMPLE_RATE, 3)}

    def health(self) -> dict:
        requests: dict[str, dict[str, int]] = defaultdict(dict)
        for (route, status), count in sorted(self.requests.items()):
            requests[route][str(status)] = count
        batches = {kind: {"batches": len(sizes), "mean_size": float(np.mean(sizes)) if sizes else 0.0,
                          "max_size": max(sizes, default=0)} for kind, sizes in self.batch_sizes.items()}
        index = None if self.index is None else {
            "path": self.index.path, "pages": len(self.index.page_ids),
            "patches_per_page": self.index.patch_vectors.shape[1]}
        return {"status": "ok", "settings": dataclasses.asdict(self.settings), "models": self.models.about,
                "torch_threads": torch.get_num_threads(), "index": index,
                "cache": {kind: cache.stats() for kind, cache in self.caches.items()},
                "batches": batches, "requests": dict(requests)}


# ---------------------------------------------------------------------------------------------------
# The HTTP app


class _CountRequests:
    """ASGI middleware: counts every response by method, path and status, into the ModelServer."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_send(message: dict) -> None:
            server = getattr(scope["app"].state, "server", None)
            if message["type"] == "http.response.start" and server is not None:
                server.requests[(f"{scope['method']} {scope['path']}", message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


def _media_type(request: Any) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Any, accepted: Sequence[str]) -> bytes:
    """The request's body, checked: 415 for another Content-Type, 413 past MAX_BODY_BYTES (from the
    Content-Length header when there is one, else while reading), 400 when empty."""
    media_type = _media_type(request)
    if media_type not in accepted:
        raise RequestError(415, f"Content-Type must be {' or '.join(accepted)}, got {media_type or 'none'}; "
                                f"send the file's bytes as the body")
    too_large = f"the body is over the limit of {MAX_BODY_BYTES:,} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestError(413, f"{too_large} ({int(declared):,} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(413, too_large)
        chunks.append(chunk)
    if not size:
        raise RequestError(400, f"the body is empty: send the file's bytes ({' or '.join(accepted)})")
    return b"".join(chunks)


def _set_threads_from_env() -> None:
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise RuntimeError(f"{THREADS_ENV} must be a whole number >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))


def create_app(load_models: Callable[[], Models] = load_zoo_models,
               index_path: str | None = None) -> "FastAPI":
    """The FastAPI app. At startup it sets torch's threads from $MMBOOK_SERVE_THREADS (when set), loads the
    models with `load_models` and the page index from `index_path` or $MMBOOK_INDEX (when given); a
    failure there stops the startup with the reason. Tests pass their own `load_models`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    class TextIn(BaseModel):
        text: str

    class SearchIn(BaseModel):
        query: str
        k: int = Field(5, ge=1, le=MAX_K)

    class SettingsIn(BaseModel):
        batching: bool | None = None
        cache: bool | None = None
        max_batch: int | None = None
        max_wait_ms: float | None = None
        timeout_s: float | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        _set_threads_from_env()
        path = index_path or os.environ.get(INDEX_ENV) or None
        server = ModelServer(load_models(), load_index(path) if path else None)
        await server.start()
        app.state.server = server
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="The book's tiny models, served", lifespan=lifespan)
    app.add_middleware(_CountRequests)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    def server_of(request: Request) -> ModelServer:
        return request.app.state.server

    @app.get("/health")
    async def health(request: Request) -> dict:
        return server_of(request).health()

    @app.post("/embed/text")
    async def embed_text(body: TextIn, request: Request) -> dict:
        server = server_of(request)
        return await server.within_timeout(server.embed_text(body.text))

    @app.post("/embed/image")
    async def embed_image(request: Request) -> dict:
        """Body: PNG or JPEG bytes; the image is resized to 32x32 RGB."""
        server, data = server_of(request), await _read_body(request, IMAGE_TYPES)
        return await server.within_timeout(server.embed_image(data))

    @app.post("/search")
    async def search(body: SearchIn, request: Request) -> dict:
        server = server_of(request)
        return await server.within_timeout(server.search(body.query, body.k))

    @app.post("/answer")
    async def answer(question: str, request: Request) -> dict:
        """Body: PNG or JPEG bytes (resized to 32x32 RGB); the question is a query parameter."""
        server, data = server_of(request), await _read_body(request, IMAGE_TYPES)
        return await server.within_timeout(server.answer(data, question))

    @app.post("/transcribe")
    async def transcribe(request: Request) -> dict:
        """Body: a 16-bit PCM mono WAV at 16 kHz, at most 10 s."""
        server, data = server_of(request), await _read_body(request, AUDIO_TYPES)
        return await server.within_timeout(server.transcribe(data))

    @app.put("/settings")
    async def settings(body: SettingsIn, request: Request) -> dict:
        changes = body.model_dump(exclude_none=True)
        return dataclasses.asdict(await server_of(request).change(**changes))

    return app


def __getattr__(name: str) -> Any:
    """`utils.serving.app` (what uvicorn imports) is built on first use, so that importing this module for
    its other parts needs no FastAPI."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------
# The client side: start and stop a server, load-test it, make request bodies

_SERVERS: dict[str, subprocess.Popen] = {}  # base URL -> the server process, while `serve` runs it
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds `utils`


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (another process could still take it before we do)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_threads() -> int:
    """CPU threads for a server that shares the machine with its client: half the cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


@contextlib.contextmanager
def serve(app: str = "utils.serving:app", env: dict[str, str] | None = None,
          startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Run `python -m uvicorn APP` on 127.0.0.1 in a child process; yield its base URL once GET /health
    answers 200; stop it on leaving the block, whatever happened (terminate, 10 s grace, then kill).

    The child inherits os.environ plus `env`; its torch and OpenMP threads default to `server_threads()`
    (override with env={"MMBOOK_SERVE_THREADS": ..., "OMP_NUM_THREADS": ...}). Its output goes to a
    temporary log, deleted afterwards. RuntimeError, with the end of the log, when it exits during
    startup or is not healthy within `startup_timeout_s`. `running_servers()` lists any still running.
    """
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    threads = str(server_threads())
    child_env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, THREADS_ENV: threads,
                 "PYTHONUNBUFFERED": "1", **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), child_env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    log_fd, log_path = tempfile.mkstemp(prefix="mmbook-serve-", suffix=".log")
    try:
        with os.fdopen(log_fd, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
        _SERVERS[url] = process
        try:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited during startup (exit code {process.returncode}); "
                                       f"the end of its log:\n{_tail(log_path)}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2.0, trust_env=False).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not healthy after {startup_timeout_s:g} s; "
                                       f"the end of its log:\n{_tail(log_path)}")
                time.sleep(0.05)
            yield url
        finally:
            _stop(process)
            _SERVERS.pop(url, None)
    finally:
        Path(log_path).unlink(missing_ok=True)


def _tail(path: str, lines: int = 25) -> str:
    text = Path(path).read_text(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:]) or "(the log is empty)"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stop_all() -> None:
    for process in list(_SERVERS.values()):
        _stop(process)


atexit.register(_stop_all)  # a notebook that exits inside `with serve()` still stops its server


def running_servers() -> dict[str, int]:
    """Servers started by `serve` that are still running: base URL -> process id (empty when none)."""
    return {url: process.pid for url, process in _SERVERS.items() if process.poll() is None}


def load_test(url: str, requests: Sequence[dict], concurrency: int = 32, timeout_s: float = 30.0) -> dict:
    """Send `requests` to the server at `url`, at most `concurrency` at a time, and time them.

    Each request is a dict: "path" (required), "method" (default "GET"), and any of "json", "content",
    "headers", "params". Works from a script and from a Jupyter kernel (whose event loop is already
    running): the requests run on a fresh event loop in a thread of their own.
    Returns n, concurrency, latencies_ms (one per answered request, in completion order), p50_ms, p95_ms,
    wall_s, throughput_rps (answered requests per second of wall time), statuses {code: count} and
    errors {message: count} for requests that got no answer (timeouts, refused connections).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    for i, spec in enumerate(requests):
        unknown = set(spec) - {"method", "path", "json", "content", "headers", "params"}
        if "path" not in spec or unknown:
            raise ValueError(f"request {i} needs a 'path' and only method/path/json/content/headers/params "
                             f"keys, got {sorted(spec)}")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _load_test(url, requests, concurrency, timeout_s)).result()


async def _load_test(url: str, requests: Sequence[dict], concurrency: int, timeout_s: float) -> dict:
    import httpx

    # Several small clients, not one: an AsyncClient juggling 32 connections spent ~2.3 ms of CPU per
    # request in its connection pool (4 connections: ~0.7 ms), which capped a 2-core machine near 300
    # requests/s and measured the client instead of the server.
    per_client = 4
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    clients = [httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, trust_env=False)
               for _ in range(-(-concurrency // per_client))]
    slots: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()  # a semaphore that also names the client
    for slot in range(concurrency):
        slots.put_nowait(clients[slot // per_client])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def one(spec: dict) -> None:
        client = await slots.get()  # at most `concurrency` requests in flight
        start = time.perf_counter()
        try:
            response = await client.request(
                spec.get("method", "GET"), spec["path"], json=spec.get("json"), content=spec.get("content"),
                headers=spec.get("headers"), params=spec.get("params"))
        except httpx.HTTPError as error:
            errors[runtime.error_line(error)] += 1
            return
        finally:
            slots.put_nowait(client)
        latencies.append(1000 * (time.perf_counter() - start))
        statuses[response.status_code] += 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one(spec) for spec in requests))
    finally:
        wall = time.perf_counter() - start
        for client in clients:
            await client.aclose()
    p50, p95 = np.percentile(latencies, [50, 95]).tolist() if latencies else (float("nan"), float("nan"))
    return {"n": len(requests), "concurrency": concurrency, "latencies_ms": latencies, "p50_ms": p50,
            "p95_ms": p95, "wall_s": wall, "throughput_rps": len(latencies) / wall if wall > 0 else 0.0,
            "statuses": dict(sorted(statuses.items())), "errors": dict(errors)}


def png_bytes(image: torch.Tensor | np.ndarray | Image.Image) -> bytes:
    """PNG file bytes of a PIL image, or of a float image [3, H, W] in [0, 1] (tensor or array, as
    utils.shapes makes them)."""
    if not isinstance(image, Image.Image):
        pixels = runtime.to_numpy(image)
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise ValueError(f"need a PIL image or a float image [3, H, W] in [0, 1], "
                             f"got shape {pixels.shape}")
        image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(waveform: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV file bytes of a waveform in [-1, 1] (clipped): [S] mono, or [C, S] with C channels."""
    samples = np.atleast_2d(runtime.to_numpy(waveform).astype(np.float64))  # [C, S]
    if samples.ndim != 2:
        raise ValueError(f"need a waveform [S] or [channels, S], got shape {samples.shape}")
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2").T  # [S, C]: frames of interleaved channels
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(samples.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()
