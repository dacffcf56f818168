"""Build small random VLMs of real transformers architectures, saved with save_pretrained, fully offline."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
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


def _build_llava(out_dir: Path, hidden: int, layers: int) -> None:
    """LLaVA: CLIP vision tower, MLP projector, Llama decoder."""
    tokenizer = train_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
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


BUILDERS = {"llava": _build_llava}


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
