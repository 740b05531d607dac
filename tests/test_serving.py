"""utils.serving: the dynamic batcher, MaxSim, the LRU cache, every endpoint and every refused input,
and one real server started and stopped by `serve`. Fast: the HTTP tests use untrained models."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import wave
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from utils import serving, speech, tiny_clip, tiny_vlm, zoo

# ---------------------------------------------------------------------------------------------------
# The dynamic batcher, in-process


def run(coroutine, timeout_s: float = 10.0):
    """asyncio.run with a time limit, so that a stuck batcher fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


async def batched(run_batch, items, **options) -> list:
    """Submit every item at once to a fresh batcher; the results (or exceptions), in order."""
    batcher = serving.DynamicBatcher(run_batch, **options)
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(item) for item in items), return_exceptions=True)
    finally:
        await batcher.stop()


def test_batches_form_and_every_result_reaches_its_caller():
    seen: list[list[int]] = []

    def run_batch(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [10 * item for item in items]

    results = run(batched(run_batch, range(20), max_batch=8, max_wait_ms=50))
    assert results == [10 * i for i in range(20)]
    assert max(map(len, seen)) == 8 and all(len(batch) <= 8 for batch in seen)
    assert sorted(i for batch in seen for i in batch) == list(range(20)), "each item runs exactly once"


def test_an_error_in_run_batch_reaches_every_caller_and_the_batcher_keeps_going():
    def run_batch(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("the model broke")
        return items

    async def main() -> tuple[list, int]:
        batcher = serving.DynamicBatcher(run_batch, max_batch=8, max_wait_ms=20)
        await batcher.start()
        failed = await asyncio.gather(*(batcher.submit(i) for i in (-1, 1, 2)), return_exceptions=True)
        after = await batcher.submit(5)
        await batcher.stop()
        return failed, after

    failed, after = run(main())
    assert all(isinstance(e, ValueError) and "the model broke" in str(e) for e in failed)
    assert after == 5


def test_a_lone_item_waits_about_max_wait_and_a_wrong_result_count_is_an_error():
    start = time.perf_counter()
    assert run(batched(lambda items: items, ["alone"], max_batch=8, max_wait_ms=60)) == ["alone"]
    assert 0.05 <= time.perf_counter() - start < 0.5
    error = run(batched(lambda items: items[:-1], [1], max_wait_ms=0))[0]
    assert isinstance(error, RuntimeError) and "0 results for 1 items" in str(error)


def test_callers_who_time_out_are_skipped_and_stop_releases_whoever_waits():
    def slow(items: list[int]) -> list[int]:
        time.sleep(0.05)
        return items

    async def main() -> tuple[BaseException, int, BaseException]:
        batcher = serving.DynamicBatcher(slow, max_batch=4, max_wait_ms=0)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(0)
        await batcher.start()
        gave_up = await asyncio.gather(asyncio.wait_for(batcher.submit(1), 0.01), return_exceptions=True)
        later = await batcher.submit(2)
        busy = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.01)  # item 3 is in the model now
        await batcher.stop()
        return gave_up[0], later, (await asyncio.gather(busy, return_exceptions=True))[0]

    gave_up, later, stopped = run(main())
    assert isinstance(gave_up, asyncio.TimeoutError) and later == 2
    assert isinstance(stopped, RuntimeError) and "stopped" in str(stopped)
    with pytest.raises(ValueError, match="max_batch"):
        serving.DynamicBatcher(slow, max_batch=0)


# ---------------------------------------------------------------------------------------------------
# MaxSim and the cache


def test_maxsim_scores_match_a_brute_force_loop_and_respect_the_mask():
    rng = np.random.default_rng(0)
    query, patches = rng.normal(size=(3, 8)), rng.normal(size=(5, 4, 8))
    mask = rng.random((5, 4)) > 0.4
    mask[:, 0] = True
    brute = [sum(max(q @ patches[p, m] for m in range(4) if mask[p, m]) for q in query) for p in range(5)]
    assert np.allclose(serving.maxsim_scores(query, patches, mask), brute, atol=1e-5)
    unmasked = [sum(max(q @ patches[p, m] for m in range(4)) for q in query) for p in range(5)]
    assert np.allclose(serving.maxsim_scores(torch.tensor(query), patches), unmasked, atol=1e-5)
    padded = patches.copy()
    padded[~mask] = 100.0  # padding rows must not count, however large
    assert np.allclose(serving.maxsim_scores(query, padded, mask), brute, atol=1e-4)
    with pytest.raises(ValueError, match="patches"):
        serving.maxsim_scores(query, patches[..., :4])
    with pytest.raises(ValueError, match="mask"):
        serving.maxsim_scores(query, patches, mask[:, :2])


def test_the_cache_is_lru_counts_hits_and_misses_and_clears():
    cache = serving.EmbeddingCache(max_size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now b is the least recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("c") == 3 and len(cache) == 2
    assert cache.stats() == {"size": 2, "max_size": 2, "hits": 2, "misses": 1, "hit_rate": 2 / 3}
    cache.clear()
    assert len(cache) == 0 and cache.hits == cache.misses == 0
    assert serving.text_key("A red  circle!") == serving.text_key("a red circle") == "text:a red circle"
    assert serving.image_key(b"x") != serving.image_key(b"y") and len(serving.image_key(b"x")) == 6 + 64
    with pytest.raises(ValueError, match="max_size"):
        serving.EmbeddingCache(0)


def test_request_bodies_round_trip():
    image = torch.rand(3, 32, 32)
    decoded = serving.decode_image(serving.png_bytes(image))
    assert decoded.dtype == torch.float32 and torch.allclose(decoded, image, atol=0.5 / 255 + 1e-6)
    assert serving.decode_image(serving.png_bytes(torch.rand(3, 20, 48))).shape == (3, 32, 32)
    wave_in = torch.sin(torch.arange(8000) / 10) * 0.5
    wave_out = serving.decode_wav(serving.wav_bytes(wave_in))
    assert wave_out.shape == (8000,) and torch.allclose(wave_out, wave_in, atol=1e-4)
    with pytest.raises(ValueError, match="3, H, W"):
        serving.png_bytes(torch.rand(32, 32))


# ---------------------------------------------------------------------------------------------------
# The HTTP app, with untrained models (fast, and independent of the zoo's cache)

fastapi = pytest.importorskip("fastapi", reason="the server tests need fastapi (pip install fastapi)")
pytest.importorskip("httpx", reason="the server tests need httpx (FastAPI's TestClient uses it)")
from fastapi.testclient import TestClient  # noqa: E402

PNG = {"content-type": "image/png"}


def untrained_models() -> serving.Models:
    torch.manual_seed(0)
    models = (tiny_clip.TinyCLIP().eval(), tiny_vlm.build_tiny_vlm().eval(), speech.build_tiny_asr().eval())
    return serving.Models(*models, about={"tiny_clip": "untrained"})


@pytest.fixture(scope="module")
def index_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 4, tiny_clip.EMBED_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    mask = np.ones((6, 4), dtype=bool)
    mask[:, 3] = False
    vectors[:, 3] = 0
    path = tmp_path_factory.mktemp("index") / "pages.npz"
    np.savez(path, patch_vectors=vectors, patch_mask=mask, page_ids=np.array([f"page-{i}" for i in range(6)]))
    return path


@pytest.fixture(scope="module")
def client(index_file):
    with TestClient(serving.create_app(untrained_models, index_path=str(index_file))) as test_client:
        yield test_client


@pytest.fixture
def fresh(client):
    """The client, with the default settings put back afterwards."""
    yield client
    assert client.put("/settings", json=dataclass_dict(serving.Settings())).status_code == 200


def dataclass_dict(settings: serving.Settings) -> dict:
    import dataclasses

    return dataclasses.asdict(settings)


def refused(response, status: int, words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert words.lower() in response.json()["detail"].lower(), response.json()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header, with no pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b""))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def wav(samples: np.ndarray, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def embed(client, text: str):
    return client.post("/embed/text", json={"text": text})


def post(client, path: str, body: bytes, content_type: str = "image/png", **params):
    """A raw-body POST (an image or a recording), with query parameters."""
    return client.post(path, content=body, headers={"content-type": content_type}, params=params)


def test_health_and_text_embeddings(fresh):
    health = fresh.get("/health").json()
    assert health["status"] == "ok" and health["settings"]["batching"] and health["index"]["pages"] == 6
    said = embed(fresh, "a red circle beside a zebra").json()
    assert len(said["vector"]) == 64 and abs(np.linalg.norm(said["vector"]) - 1) < 1e-4
    assert said["unknown_words"] == ["beside", "zebra"] and not said["cached"]
    again = embed(fresh, "A red circle, beside a zebra!").json()
    assert again["cached"] and again["vector"] == said["vector"]
    refused(embed(fresh, "   "), 422, "text is empty")
    refused(embed(fresh, "red " * 60), 422, "has 240 characters; the limit is 200")
    refused(embed(fresh, "red " * 17), 422, "17 words; the tiny CLIP reads at most 16")
    refused(embed(fresh, "42 ?"), 422, "no words")
    assert post(fresh, "/embed/text", b"{not json", "application/json").status_code == 422
    assert fresh.post("/embed/text", json={"words": "red"}).status_code == 422


def test_image_embeddings_and_every_bad_image(fresh):
    image = serving.png_bytes(torch.rand(3, 32, 32))
    said = post(fresh, "/embed/image", image).json()
    assert len(said["vector"]) == 64 and not said["cached"]
    assert post(fresh, "/embed/image", image).json()["cached"]
    jpeg = io.BytesIO()
    Image.new("RGB", (100, 60), (200, 30, 30)).save(jpeg, format="JPEG")
    assert post(fresh, "/embed/image", jpeg.getvalue(), "image/jpeg").is_success
    refused(post(fresh, "/embed/image", image, "text/plain"), 415, "image/png or image/jpeg, got text/plain")
    refused(post(fresh, "/embed/image", b"GIF89a, or not"), 400, "cannot decode the image")
    big = serving.png_bytes(torch.rand(3, 64, 64))
    refused(post(fresh, "/embed/image", big[: len(big) // 2]), 400, "cannot decode the image")
    refused(post(fresh, "/embed/image", png_header(10_000, 10_000)), 413,
            "10000 x 10000 = 100,000,000 pixels; the limit is 4096 x 4096")
    refused(post(fresh, "/embed/image", png_header(20_000, 20_000)), 413, "the limit is 4096")
    refused(post(fresh, "/embed/image", b"\0" * (serving.MAX_BODY_BYTES + 1)), 413,
            "over the limit of 10,485,760 bytes")
    refused(post(fresh, "/embed/image", b""), 400, "the body is empty")
    assert fresh.get("/health").json()["status"] == "ok"


def test_answers_and_bad_questions(fresh):
    image = serving.png_bytes(torch.rand(3, 32, 32))
    said = post(fresh, "/answer", image, question="what colour is the circle?")
    assert said.status_code == 200 and isinstance(said.json()["answer"], str)
    again = post(fresh, "/answer", image, question="What colour is the circle ?")
    assert again.json() == {**said.json(), "cached": True}
    refused(post(fresh, "/answer", image, question=" "), 422, "question is empty")
    refused(post(fresh, "/answer", image, question="red " * 28), 422,
            "28 tokens; the TinyVLM takes at most 27")
    assert post(fresh, "/answer", image, question="red " * 27).is_success
    assert post(fresh, "/answer", image).status_code == 422  # no question at all
    refused(post(fresh, "/answer", b"junk", question="what?"), 400, "cannot decode the image")
    assert serving.max_question_tokens(tiny_vlm.build_tiny_vlm()) == 27


def test_transcription_and_every_bad_recording(fresh):
    tone = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2")
    said = post(fresh, "/transcribe", wav(tone), "audio/wav").json()
    assert isinstance(said["text"], str) and said["seconds"] == 1.0
    refused(post(fresh, "/transcribe", wav(tone, rate=44100), "audio/wav"), 422,
            "audio must be 16000 Hz mono, got 44100 Hz; "
            "resample it first (e.g. torchaudio.functional.resample)")
    refused(post(fresh, "/transcribe", wav(np.repeat(tone, 2), channels=2), "audio/wav"), 422,
            "mono, got 2 channels")
    eight_bit = wav((tone // 256 + 128).astype(np.uint8), width=1)
    refused(post(fresh, "/transcribe", eight_bit, "audio/wav"), 422, "16-bit pcm, got 8-bit")
    refused(post(fresh, "/transcribe", b"RIFF, but not really", "audio/wav"), 400, "cannot read the wav")
    refused(post(fresh, "/transcribe", wav(np.tile(tone, 11)), "audio/wav"), 413,
            "11.0 s long; the limit is 10 s")
    refused(post(fresh, "/transcribe", wav(tone[:100]), "audio/wav"), 422, "at least 0.1 s")
    refused(post(fresh, "/transcribe", wav(tone), "image/png"), 415, "audio/wav")


def test_search_ranks_pages_by_maxsim_over_phrases(fresh, index_file):
    found = fresh.post("/search", json={"query": "a red circle and a small blue square", "k": 3}).json()
    assert found["phrases"] == ["a red circle", "a small blue square"] and len(found["page_ids"]) == 3
    phrases = np.stack([embed(fresh, phrase).json()["vector"] for phrase in found["phrases"]])
    with np.load(index_file) as index:
        scores = serving.maxsim_scores(phrases, index["patch_vectors"], index["patch_mask"])
    best = np.argsort(-scores, kind="stable")[:3]
    assert found["page_ids"] == [f"page-{i}" for i in best]
    assert np.allclose(found["scores"], scores[best], atol=1e-5)
    assert len(fresh.post("/search", json={"query": "red", "k": 100}).json()["page_ids"]) == 6
    refused(fresh.post("/search", json={"query": "", "k": 3}), 422, "query is empty")
    refused(fresh.post("/search", json={"query": "red and " + "blue " * 17, "k": 3}), 422, "phrase 2")
    assert fresh.post("/search", json={"query": "red", "k": 0}).status_code == 422


def test_search_without_an_index_is_503_and_a_bad_index_stops_the_startup(tmp_path, monkeypatch):
    monkeypatch.delenv(serving.INDEX_ENV, raising=False)
    with TestClient(serving.create_app(untrained_models)) as bare:
        refused(bare.post("/search", json={"query": "red", "k": 1}), 503, "no page index was given")
    np.savez(tmp_path / "bad.npz", page_ids=np.arange(3))
    monkeypatch.setenv(serving.INDEX_ENV, str(tmp_path / "bad.npz"))
    app = serving.create_app(untrained_models)
    with pytest.raises(ValueError, match="no 'patch_vectors' array"), TestClient(app):
        pass
    with pytest.raises(ValueError, match="no such file"):
        serving.load_index(tmp_path / "missing.npz")


def test_settings_switch_batching_and_cache_and_reset_the_counters(fresh):
    text = {"text": "a large green triangle"}
    batched = fresh.post("/embed/text", json=text).json()["vector"]
    new = fresh.put("/settings", json={"batching": False, "cache": False, "max_batch": 4}).json()
    assert new == {**dataclass_dict(serving.Settings()), "batching": False, "cache": False, "max_batch": 4}
    health = fresh.get("/health").json()
    assert health["cache"]["text"]["size"] == 0 and health["requests"] == {"PUT /settings": {"200": 1}}
    alone = fresh.post("/embed/text", json=text).json()
    assert not alone["cached"] and np.allclose(alone["vector"], batched, atol=1e-5)
    assert fresh.get("/health").json()["cache"]["text"]["misses"] == 0, "a cache that is off is not consulted"
    refused(fresh.put("/settings", json={"max_batch": 0}), 422, "max_batch must be between 1 and 1024")
    refused(fresh.put("/settings", json={"timeout_s": 0}), 422, "timeout_s")
    assert fresh.put("/settings", json={"batching": "sometimes"}).status_code == 422


def test_a_slow_request_times_out_with_504_and_the_server_stays_healthy(fresh):
    image = serving.png_bytes(torch.rand(3, 32, 32))
    for batching in (False, True):
        fresh.put("/settings", json={"batching": batching, "cache": False, "timeout_s": 1e-6})
        refused(post(fresh, "/answer", image, question="how many objects are there?"), 504,
                "took longer than 1e-06 s")
    fresh.put("/settings", json={"timeout_s": 10})
    assert post(fresh, "/answer", image, question="describe the image").is_success
    health = fresh.get("/health").json()
    assert health["status"] == "ok" and health["requests"]["POST /answer"] == {"200": 1}


def test_concurrent_requests_form_batches_in_the_server():
    async def main() -> dict:
        settings = serving.Settings(max_wait_ms=20, cache=False)
        server = serving.ModelServer(untrained_models(), settings=settings)
        await server.start()
        try:
            said = await asyncio.gather(*(server.embed_text(f"a {c} circle") for c in ["red", "blue"] * 8))
            assert said[0]["vector"] == said[2]["vector"] != said[1]["vector"]
            return server.health()["batches"]["text"]
        finally:
            await server.stop()

    batches = run(main())
    assert batches["batches"] < 16 and batches["max_size"] > 1


def test_a_failing_model_is_a_500_and_a_settings_change_releases_waiting_requests_with_503():
    async def main() -> tuple[serving.RequestError, serving.RequestError]:
        server = serving.ModelServer(untrained_models(), settings=serving.Settings(max_wait_ms=500))
        server.run_batch["image"] = lambda items: [1 / 0 for _ in items]
        await server.start()
        failed = (await asyncio.gather(server.embed_image(serving.png_bytes(torch.rand(3, 32, 32))),
                                       return_exceptions=True))[0]
        waiting = asyncio.ensure_future(server.embed_text("a red circle"))
        await asyncio.sleep(0.05)  # it waits for company in the batcher (max_wait_ms=500)
        await server.change(max_wait_ms=5)
        released = (await asyncio.gather(waiting, return_exceptions=True))[0]
        assert (await server.embed_text("a red circle"))["vector"]
        await server.stop()
        return failed, released

    failed, released = run(main())
    assert failed.status == 500 and "ZeroDivisionError" in failed.detail
    assert released.status == 503 and "settings changed" in released.detail


def test_the_server_never_trains_a_missing_model(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    expected = r"never trains, and the zoo has no usable tiny_clip v2 \(not cached: .*zoo\.load\('tiny_clip"
    with pytest.raises(RuntimeError, match=expected):
        serving.load_zoo_models()
    assert not list(tmp_path.iterdir()), "nothing was trained or written"


# ---------------------------------------------------------------------------------------------------
# One real server: started by `serve`, load-tested, stopped


def test_serve_reports_a_server_that_dies_during_startup():
    pytest.importorskip("uvicorn", reason="serve() runs uvicorn (pip install uvicorn)")
    with pytest.raises(RuntimeError, match="(?s)exited during startup.*no_such_module"), \
            serving.serve("utils.no_such_module:app", startup_timeout_s=20):
        pass
    assert serving.running_servers() == {}


def test_serve_load_test_and_stop_a_real_server():
    pytest.importorskip("uvicorn", reason="serve() runs uvicorn (pip install uvicorn)")
    if not all(zoo.paths(name, zoo.BOOK_MODELS[name].version)[0].is_file() for name in serving.SERVED_MODELS):
        pytest.skip("the zoo's cache lacks a served model (run zoo.load for tiny_clip, tiny_vlm, tiny_asr)")
    image = serving.png_bytes(torch.rand(3, 32, 32))
    requests = [{"method": "POST", "path": "/embed/text", "json": {"text": f"a {c} square"}}
                for c in ("red", "blue")] * 10
    requests.append({"method": "POST", "path": "/embed/image", "content": image, "headers": {**PNG}})
    requests.append({"method": "POST", "path": "/embed/image", "content": b"junk", "headers": {**PNG}})
    with serving.serve(startup_timeout_s=30) as url:
        pids = serving.running_servers()
        assert list(pids) == [url]
        report = serving.load_test(url, requests, concurrency=8, timeout_s=10)

        async def inside_a_running_loop() -> dict:  # as in a Jupyter kernel
            return serving.load_test(url, requests[:4], concurrency=2, timeout_s=10)

        assert asyncio.run(inside_a_running_loop())["statuses"] == {200: 4}
    assert report["statuses"] == {200: 21, 400: 1} and not report["errors"]
    assert len(report["latencies_ms"]) == 22 and report["p50_ms"] <= report["p95_ms"]
    assert report["throughput_rps"] > 0
    assert serving.running_servers() == {}
    gone = serving.load_test(url, requests[:2], concurrency=2, timeout_s=2)
    assert sum(gone["errors"].values()) == 2 and gone["statuses"] == {}
