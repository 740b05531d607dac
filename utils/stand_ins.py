"""Tiny offline stand-ins for the pretrained models of "the real thing" sections.

Each builder returns (model, processor) of the same classes as the real checkpoint that `utils.hub`
names in its `KINDS` table - CLIPModel, ViTForImageClassification, WhisperForConditionalGeneration,
Idefics3ForConditionalGeneration (SmolVLM), a diffusers StableDiffusionPipeline - with tiny widths,
random weights and tokenizers made in code (byte-level BPE without merges, so any text encodes).
The real checkpoints' geometry is kept where lessons count it (224-pixel CLIP images in 32-pixel
patches, Whisper's 80 mel bins and 30-second window, SmolVLM's 512-pixel tiles and 64 tokens a
tile), so shapes and token counts print as they would; the outputs mean nothing. `hub.load_pretrained`
builds them when the hub cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# ---------------------------------------------------------------------------------------------------
# Tiny tokenizers, made in code (no download): byte-level BPE with no merges, so any text encodes.


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values, in a fixed order."""
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _clip_tokenizer() -> Any:
    """A CLIPTokenizer over bytes: every byte, every byte ending a word (`</w>`), start and end tokens."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _tiny_clip_text_config(tokenizer: Any) -> dict[str, Any]:
    """A one-layer CLIP text tower (width 32) that fits `tokenizer`."""
    return dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


# ---------------------------------------------------------------------------------------------------
# Stand-ins (offline): same classes, tiny sizes, random weights


def _stand_in_clip() -> tuple[Any, Any]:
    """CLIPModel with 224-pixel images in 32-pixel patches (as the real one) but width 32, one layer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer()
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=224, patch_size=32)
    text = _tiny_clip_text_config(tokenizer)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    return CLIPModel(config).eval(), processor


def _stand_in_vit() -> tuple[Any, Any]:
    """ViTForImageClassification on 224-pixel images in 16-pixel patches (197 tokens, as the real one)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {i: f"stand-in class {i}" for i in range(10)}
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=224, patch_size=16, id2label=labels,
                       label2id={label: i for i, label in labels.items()})
    return ViTForImageClassification(config).eval(), ViTImageProcessor()


def _whisper_languages() -> list[str]:
    """Whisper's language tokens ("<|en|>", ...) in the order the real vocabulary has them."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in LANGUAGES]


def _whisper_special_tokens() -> list[str]:
    """Whisper's special tokens in the real order: end, start, the languages, tasks, flags."""
    languages = _whisper_languages()
    flags = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
             "<|notimestamps|>"]
    return ["<|endoftext|>", "<|startoftranscript|>", *languages, *flags]


def _stand_in_whisper() -> tuple[Any, Any]:
    """WhisperForConditionalGeneration, width 32, one encoder and one decoder layer, 80 mel bins, 30 s."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    specials = _whisper_special_tokens()
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]  # 0.00 ... 30.00 s, as the real vocabulary
    vocab = {token: index for index, token in enumerate(_byte_alphabet() + specials + timestamps)}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], extra_special_tokens=specials[1:])
    end, start = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, pad_token_id=end, bos_token_id=end,
        eos_token_id=end, decoder_start_token_id=start,
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = _whisper_generation_config(vocab)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    return model, processor


def _whisper_generation_config(vocab: dict[str, int]) -> Any:
    """The fields Whisper's `generate` reads (languages, tasks, timestamps), as in the real checkpoint."""
    from transformers import GenerationConfig

    end = vocab["<|endoftext|>"]
    return GenerationConfig(
        decoder_start_token_id=vocab["<|startoftranscript|>"], bos_token_id=end, eos_token_id=end,
        pad_token_id=end, max_length=448, is_multilingual=True,
        lang_to_id={token: vocab[token] for token in _whisper_languages()},
        task_to_id={"translate": vocab["<|translate|>"], "transcribe": vocab["<|transcribe|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"], prev_sot_token_id=vocab["<|startofprev|>"],
        begin_suppress_tokens=[vocab["Ġ"], end], suppress_tokens=[], max_initial_timestamp_index=50,
        return_timestamps=False, alignment_heads=[[0, 0], [0, 1]],
    )


# SmolVLM's conversation format ("<|im_start|>User:<image>question<end_of_utterance>\nAssistant:"),
# written here as a Jinja template so the stand-in's apply_chat_template gives the same shape of prompt.
_VLM_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _vlm_tokenizer() -> Any:
    """A GPT2Tokenizer over bytes plus the chat and image-layout tokens Idefics3's processor expects."""
    from transformers import GPT2Tokenizer

    grid = [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                "<end_of_utterance>", "<global-img>", *grid]
    vocab = {token: index for index, token in enumerate(specials + _byte_alphabet())}
    return GPT2Tokenizer(
        vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", pad_token="<|im_end|>", extra_special_tokens=specials[3:],
    )


def _idefics3_image_processor() -> Any:
    """SmolVLM-256M's image preprocessing: longest edge 2048, cut into 512-pixel tiles plus a global view.

    The class follows transformers' own choice: the PIL backend where torchvision is too old for the
    Lanczos resampling the checkpoint asks for (torchvision < 0.27), the torchvision one otherwise.
    """
    import transformers

    try:
        from transformers.utils.import_utils import is_torchvision_greater_or_equal

        use_torchvision = is_torchvision_greater_or_equal("0.27")
    except ImportError:
        use_torchvision = False
    cls = transformers.Idefics3ImageProcessor
    if not use_torchvision and hasattr(transformers, "Idefics3ImageProcessorPil"):
        cls = transformers.Idefics3ImageProcessorPil
    return cls(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512},
               image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def _stand_in_vlm() -> tuple[Any, Any]:
    """Idefics3ForConditionalGeneration with SmolVLM-256M's image geometry (512-pixel tiles, 16-pixel
    patches, pixel shuffle 4 -> 64 tokens a tile) but a width-32 vision tower and a 2-layer Llama of width 64.
    """
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
    )

    tokenizer = _vlm_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    special = dict(pad_token_id=ids("<|im_end|>"), bos_token_id=ids("<|im_start|>"),
                   eos_token_id=ids("<end_of_utterance>"))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=512, patch_size=16)
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=8192, **special)
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=4,
                            image_token_id=ids("<image>"), pad_token_id=special["pad_token_id"])
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(**special)
    processor = Idefics3Processor(image_processor=_idefics3_image_processor(), tokenizer=tokenizer,
                                  image_seq_len=64, chat_template=_VLM_CHAT_TEMPLATE)
    return model, processor


def _stand_in_stable_diffusion() -> tuple[Any, Any]:
    """StableDiffusionPipeline: tiny CLIP text encoder, 2-stage UNet, 4-stage VAE (8x down, as SD), PNDM.

    Latents are 4 x 8 x 8, so images come out 64 x 64 by default.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(**_tiny_clip_text_config(tokenizer))).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64,
    )
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)  # two steps of a toy: a bar would only clutter the page
    return pipe, tokenizer


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "clip": _stand_in_clip,
    "vit": _stand_in_vit,
    "whisper": _stand_in_whisper,
    "vlm": _stand_in_vlm,
    "stable-diffusion": _stand_in_stable_diffusion,
}


