"""Build small random VLMs of real transformers architectures, saved with save_pretrained, fully offline."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    SiglipImageProcessorPil,
)

from pidcore.models.tokenizer import train_tokenizer

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _text_config(tokenizer, hidden: int, layers: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def family_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The locally trained tokenizer with the family's special tokens and chat template (PaliGemma has none)."""
    if family in ("qwen2_vl", "qwen2_5_vl"):
        tokenizer = train_tokenizer(extra_special=QWEN_TOKENS, image_token="<|image_pad|>")
        tokenizer.chat_template = QWEN_TEMPLATE
    elif family == "idefics3":
        tokenizer = train_tokenizer(extra_special=IDEFICS3_TOKENS)
        tokenizer.chat_template = IDEFICS3_TEMPLATE
    else:
        tokenizer = train_tokenizer()
        tokenizer.chat_template = CHAT_TEMPLATE if family == "llava" else None
    return tokenizer

def _build_llava(out_dir: Path, hidden: int, layers: int) -> None:
    """LLaVA: CLIP vision tower, MLP projector, Llama decoder."""
    tokenizer = family_tokenizer("llava")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               num_additional_image_tokens=1, vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision, text_config=_text_config(tokenizer, hidden, layers),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _mrope_sections(head_dim: int) -> list[int]:
    """Split the rotary half of a head into (time, height, width) sections, as Qwen2-VL does."""
    half = head_dim // 2
    spatial = (half - half // 4) // 2
    return [half - 2 * spatial, spatial, spatial]


def _build_qwen(out_dir: Path, hidden: int, layers: int, config_class, model_class, vision: dict) -> None:
    """Qwen2-VL / Qwen2.5-VL: their ViT with patch merging, M-RoPE decoder; saved without a video processor."""
    tokenizer = family_tokenizer(config_class.model_type)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=32 * 32, max_pixels=64 * 64, patch_size=8, merge_size=2,
                                               temporal_patch_size=2)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_TOKENS}
    text = _text_config(tokenizer, hidden, layers).to_dict()
    text["rope_scaling"] = {"rope_type": "default", "mrope_section": _mrope_sections(hidden // 2)}
    config = config_class(
        text_config={**text, "model_type": f"{config_class.model_type}_text"},
        vision_config={"depth": 2, "hidden_size": hidden, "num_heads": 2, "patch_size": 8, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, **vision},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model_class(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)


def _build_qwen2_vl(out_dir: Path, hidden: int, layers: int) -> None:
    """Qwen2-VL: ViT with 2x2 patch merging, Qwen2 decoder with M-RoPE."""
    _build_qwen(out_dir, hidden, layers, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                {"embed_dim": hidden, "in_chans": 3})


def _build_qwen2_5_vl(out_dir: Path, hidden: int, layers: int) -> None:
    """Qwen2.5-VL: windowed-attention ViT with SwiGLU blocks and an output projection, Qwen2 decoder with M-RoPE."""
    _build_qwen(out_dir, hidden, layers, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                {"intermediate_size": 2 * hidden, "out_hidden_size": hidden, "in_channels": 3, "window_size": 32,
                 "fullatt_block_indexes": [1]})


IDEFICS3_TOKENS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _build_idefics3(out_dir: Path, hidden: int, layers: int) -> None:
    """Idefics3 / SmolVLM: SigLIP-style vision tower, pixel-shuffle connector, Llama decoder; no image splitting."""
    tokenizer = family_tokenizer("idefics3")
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32},
                                                max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    text = {**_text_config(tokenizer, hidden, layers).to_dict(), "model_type": "llama"}
    config = Idefics3Config(
        vision_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2)
    Idefics3ForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _build_paligemma(out_dir: Path, hidden: int, layers: int) -> None:
    """PaliGemma: SigLIP vision tower, linear projector, Gemma decoder with a bidirectional prefix; no chat template."""
    tokenizer = family_tokenizer("paligemma")
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_seq_length=16)
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = {"model_type": "gemma", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": hidden // 2,
            "max_position_embeddings": 512, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = PaliGemmaConfig(
        vision_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": hidden},
        text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projection_dim=hidden)
    PaliGemmaForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


BUILDERS = {"llava": _build_llava, "qwen2_vl": _build_qwen2_vl, "qwen2_5_vl": _build_qwen2_5_vl,
            "idefics3": _build_idefics3, "paligemma": _build_paligemma}


def build_tiny_model(family: str, out_dir: str | Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Build, save and return the folder of a small random model of `family` (the config's model type)."""
    if family not in BUILDERS:
        raise ValueError(f"no tiny-model builder for family {family!r}; available: {sorted(BUILDERS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BUILDERS[family](out_dir, hidden, layers)
    return out_dir
