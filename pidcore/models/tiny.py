"""Build small random VLMs of real transformers architectures, saved with save_pretrained, fully offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, normalizers, processors
from transformers import (
    AyaVisionConfig,
    AyaVisionForConditionalGeneration,
    AyaVisionProcessor,
    BlipImageProcessorPil,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    FuyuConfig,
    FuyuForCausalLM,
    FuyuImageProcessorPil,
    FuyuProcessor,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Glm4vConfig,
    Glm4vForConditionalGeneration,
    Glm4vImageProcessorPil,
    Glm4vProcessor,
    GotOcr2ImageProcessorPil,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusImageProcessorPil,
    JanusProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessorPil,
    MllamaProcessor,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    SiglipImageProcessorPil,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMProcessor,
)

from pidcore.models.processors import without_video_processor
from pidcore.models.tokenizer import train_tokenizer

# The chat templates follow each family's turn format closely enough that its processor sees the prompt it expects;
# the families' own image placeholders, which the processors expand, are the special tokens named below.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
    "else message['role'] }}\n{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
JANUS_TOKENS = {"boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_placeholder>"}
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                   "video_token": "<video>"}
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
AYA_TOKENS = ["<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
              "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL"]
AYA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|START_OF_TURN_TOKEN|>{{ '<|USER_TOKEN|>' if message['role'] == "
    "'user' else '<|CHATBOT_TOKEN|>' }}{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|END_OF_TURN_TOKEN|>{% endfor %}"
    "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)
GLM4V_TOKENS = ["<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>",
                "<|video|>", "<|user|>", "<|assistant|>"]
GLM4V_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>{% elif item['type'] == 'text' %}"
    "{{ item['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MLLAMA_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"]
MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|image|>{% elif item['type'] == 'text' %}"
    "{{ item['text'] }}{% endif %}{% endfor %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Fuyu's processor names its image placeholder and row end itself; <0x04> is the answer token it appends.
FUYU_IMAGE_TOKENS = ("|SPEAKER|", "|NEWLINE|")


@dataclass(frozen=True)
class _Vocabulary:
    """A family's special tokens (`named`: those its processor reads by attribute, e.g. Gemma 3's boi_token), its
    image placeholder and its chat template (None: it has none)."""

    special: tuple[str, ...] = ()
    image_token: str = "<image>"
    named: dict[str, str] = field(default_factory=dict)
    template: str | None = CHAT_TEMPLATE


VOCABULARIES = {
    "llava": _Vocabulary(), "llava_next": _Vocabulary(), "paligemma": _Vocabulary(template=None),
    "llava_onevision": _Vocabulary(("<video>",)),
    "gemma3": _Vocabulary(("<start_of_turn>", "<end_of_turn>"), GEMMA3_TOKENS["image_token"], GEMMA3_TOKENS,
                          GEMMA3_TEMPLATE),
    "internvl": _Vocabulary(("<|im_start|>", "<|im_end|>"), "<IMG_CONTEXT>", INTERNVL_TOKENS, INTERNVL_TEMPLATE),
    "aya_vision": _Vocabulary(tuple(AYA_TOKENS), template=AYA_TEMPLATE),
    **{family: _Vocabulary(tuple(QWEN_TOKENS), "<|image_pad|>", template=QWEN_TEMPLATE)
       for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")},
    "glm4v": _Vocabulary(tuple(GLM4V_TOKENS), "<|image|>", {"video_token": "<|video|>"}, GLM4V_TEMPLATE),
    "idefics3": _Vocabulary(tuple(IDEFICS3_TOKENS), template=IDEFICS3_TEMPLATE),
    "smolvlm": _Vocabulary((*IDEFICS3_TOKENS, "<|im_start|>"), template="<|im_start|>" + IDEFICS3_TEMPLATE),
    "instructblip": _Vocabulary(template=None),
    "janus": _Vocabulary((), JANUS_TOKENS["image_token"], JANUS_TOKENS,
                         CHAT_TEMPLATE.replace("<image>", JANUS_TOKENS["image_token"])),
    "mllama": _Vocabulary(tuple(MLLAMA_TOKENS), "<|image|>", template=MLLAMA_TEMPLATE),
    "fuyu": _Vocabulary((FUYU_IMAGE_TOKENS[1], "<0x04>"), FUYU_IMAGE_TOKENS[0], template=None),
}


def family_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The locally trained tokenizer with the family's special tokens and chat template."""
    vocabulary = VOCABULARIES[family]
    tokenizer = train_tokenizer(extra_special=list(vocabulary.special), image_token=vocabulary.image_token,
                                named=vocabulary.named)
    tokenizer.chat_template = vocabulary.template
    return tokenizer


def _text_config(tokenizer, hidden: int, layers: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def _text(tokenizer, hidden: int, layers: int, model_type: str, **fields) -> dict:
    """The Llama-shaped text config as a dict, as decoder `model_type`, with further `fields`."""
    return {**_text_config(tokenizer, hidden, layers).to_dict(), "model_type": model_type, **fields}


def _sliding_text(tokenizer, hidden: int, layers: int, model_type: str, **fields) -> dict:
    """A decoder config of `model_type` (its own defaults otherwise) with sliding-window layers and a full-attention
    last layer, as Gemma 3's and Cohere2's."""
    return {"model_type": model_type, "vocab_size": len(tokenizer), "hidden_size": hidden,
            "intermediate_size": 2 * hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
            "num_key_value_heads": 2, "max_position_embeddings": 512, "sliding_window": 8,
            "layer_types": ["sliding_attention"] * (layers - 1) + ["full_attention"],
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, **fields}


def _clip_vision(hidden: int) -> CLIPVisionConfig:
    """A two-layer CLIP vision tower on 32-px images in 8-px patches."""
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                            num_attention_heads=2, image_size=32, patch_size=8)


def _vision(hidden: int, **fields) -> dict:
    """A two-layer ViT on 32-px images in 8-px patches, as a vision config dict (SigLIP's by default)."""
    return {"model_type": "siglip_vision_model", "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8, **fields}


def _qwen_vision(hidden: int, **fields) -> dict:
    """A two-block Qwen-style ViT: 8-px patches, 2x2 merging, two frames a temporal patch."""
    return {"depth": 2, "hidden_size": hidden, "num_heads": 2, "patch_size": 8, "spatial_merge_size": 2,
            "temporal_patch_size": 2, **fields}


def _mrope_sections(head_dim: int) -> list[int]:
    """Split the rotary half of a head into (time, height, width) sections, as Qwen2-VL does."""
    half = head_dim // 2
    spatial = (half - half // 4) // 2
    return [half - 2 * spatial, spatial, spatial]


def _save(model: torch.nn.Module, processor, out_dir: Path) -> None:
    """Save a model and its processor; the model's all-zero weight matrices (Gemma 3's image projection starts at
    zero) are drawn at random first, so that every part of a tiny model, its image path included, moves its output."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0.0, parameter.shape[0] ** -0.5)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _build_llava(out_dir: Path, hidden: int, layers: int) -> None:
    """LLaVA: CLIP vision tower, MLP projector, Llama decoder."""
    tokenizer = family_tokenizer("llava")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               num_additional_image_tokens=1, vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE)
    config = LlavaConfig(vision_config=_clip_vision(hidden), text_config=_text_config(tokenizer, hidden, layers),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _build_llava_next(out_dir: Path, hidden: int, layers: int) -> None:
    """LLaVA-NeXT: LLaVA with any-resolution tiles (a 32-px base view plus the 32-px crops of a 32x64, 64x32 or
    64x64 grid) and an image-newline row after each row of unpadded features."""
    tokenizer = family_tokenizer("llava_next")
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   num_additional_image_tokens=1, vision_feature_select_strategy="default",
                                   chat_template=CHAT_TEMPLATE)
    config = LlavaNextConfig(vision_config=_clip_vision(hidden), text_config=_text_config(tokenizer, hidden, layers),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                             vision_feature_select_strategy="default")
    _save(LlavaNextForConditionalGeneration(config), processor, out_dir)


def _build_llava_onevision(out_dir: Path, hidden: int, layers: int) -> None:
    """LLaVA-OneVision: SigLIP tower, any-resolution tiles as LLaVA-NeXT's (no CLS token), Qwen2 decoder; saved
    without a video processor."""
    tokenizer = family_tokenizer("llava_onevision")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=16,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE)
    config = LlavaOnevisionConfig(vision_config=_vision(hidden), text_config=_text(tokenizer, hidden, layers, "qwen2"),
                                  image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                  video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                  image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                                  vision_feature_select_strategy="full")
    _save(LlavaOnevisionForConditionalGeneration(config), processor, out_dir)


def _build_gemma3(out_dir: Path, hidden: int, layers: int) -> None:
    """Gemma 3: SigLIP tower pooled to 2x2 soft tokens between begin- and end-of-image tokens (attended to
    bidirectionally), Gemma 3 decoder with sliding-window layers."""
    tokenizer = family_tokenizer("gemma3")
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4,
                                chat_template=GEMMA3_TEMPLATE)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in GEMMA3_TOKENS.items()}
    text = _sliding_text(tokenizer, hidden, layers, "gemma3_text", num_key_value_heads=1, head_dim=hidden // 2,
                         query_pre_attn_scalar=hidden // 2)
    config = Gemma3Config(text_config=text, vision_config=_vision(hidden), mm_tokens_per_image=4,
                          boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
                          image_token_index=ids["image_token"])
    _save(Gemma3ForConditionalGeneration(config), processor, out_dir)


def _build_internvl(out_dir: Path, hidden: int, layers: int) -> None:
    """InternVL (native transformers, the "-hf" checkpoints): InternViT on 32-px tiles (up to 4, then a thumbnail),
    pixel shuffle to 4 tokens a tile between <img> and </img>, Qwen2 decoder; saved without a video processor."""
    tokenizer = family_tokenizer("internvl")
    image_processor = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1,
                                               max_patches=4)
    processor = without_video_processor(InternVLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                                           image_seq_length=4, chat_template=INTERNVL_TEMPLATE)
    vision = _vision(hidden, model_type="internvl_vision")
    config = InternVLConfig(vision_config=vision, text_config=_text(tokenizer, hidden, layers, "qwen2"),
                            image_seq_length=4, downsample_ratio=0.5,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    _save(InternVLForConditionalGeneration(config), processor, out_dir)


def _build_aya_vision(out_dir: Path, hidden: int, layers: int) -> None:
    """Aya Vision: SigLIP tower on 32-px tiles (up to 4, then a global view), pixel shuffle and a SwiGLU projector to
    4 tokens a tile, Cohere2 decoder whose head multiplies the logits by logit_scale (4 here, so that it shows)."""
    tokenizer = family_tokenizer("aya_vision")
    image_processor = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1,
                                               max_patches=4)
    processor = AyaVisionProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8, img_size=32,
                                   downsample_factor=2, chat_template=AYA_TEMPLATE)
    text = _sliding_text(tokenizer, hidden, layers, "cohere2", logit_scale=4.0)
    config = AyaVisionConfig(vision_config=_vision(hidden), text_config=text, downsample_factor=2,
                             image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"))
    _save(AyaVisionForConditionalGeneration(config), processor, out_dir)


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
        vision_config=_qwen_vision(hidden, **vision),
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


def _build_qwen3_vl(out_dir: Path, hidden: int, layers: int) -> None:
    """Qwen3-VL: ViT with interpolated learned position embeddings and 2x2 patch merging, whose first block's merged
    features are also added to the image positions after the first decoder layer ("deepstack"), Qwen3 decoder with
    interleaved M-RoPE; saved without a video processor."""
    tokenizer = family_tokenizer("qwen3_vl")
    image_processor = Qwen2VLImageProcessorPil(min_pixels=32 * 32, max_pixels=64 * 64, patch_size=8, merge_size=2,
                                               temporal_patch_size=2)
    processor = without_video_processor(Qwen3VLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                                          chat_template=QWEN_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_TOKENS}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_interleaved": True,
            "mrope_section": _mrope_sections(hidden // 2)}
    text = _text(tokenizer, hidden, layers, "qwen3_vl_text", head_dim=hidden // 2, rope_parameters=rope)
    vision = _qwen_vision(hidden, intermediate_size=2 * hidden, out_hidden_size=hidden, num_position_embeddings=16,
                          deepstack_visual_indexes=[0])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"])
    _save(Qwen3VLForConditionalGeneration(config), processor, out_dir)


def _build_glm4v(out_dir: Path, hidden: int, layers: int) -> None:
    """GLM-4.1V: ViT with interpolated position embeddings and 2x2 patch merging, GLM-4 decoder with M-RoPE (its
    positions need the processor's mm_token_type_ids); saved without a video processor."""
    tokenizer = family_tokenizer("glm4v")
    image_processor = Glm4vImageProcessorPil(size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64}, patch_size=8,
                                             merge_size=2, temporal_patch_size=2)
    processor = without_video_processor(Glm4vProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                                        chat_template=GLM4V_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in GLM4V_TOKENS}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
            "mrope_section": _mrope_sections(hidden // 2)}
    vision = _qwen_vision(hidden, intermediate_size=2 * hidden, out_hidden_size=hidden, image_size=32)
    config = Glm4vConfig(text_config=_text(tokenizer, hidden, layers, "glm4v_text", rope_parameters=rope),
                         vision_config=vision, image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                         image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
                         video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"])
    _save(Glm4vForConditionalGeneration(config), processor, out_dir)


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


def _build_smolvlm(out_dir: Path, hidden: int, layers: int) -> None:
    """SmolVLM 2: Idefics3's architecture with its own processor (images resized to at most 64 px and split into
    32-px tiles plus a global view, 4 tokens a tile after pixel shuffle); saved without a video processor."""
    tokenizer = family_tokenizer("smolvlm")
    image_processor = SmolVLMImageProcessorPil(do_image_splitting=True, size={"longest_edge": 64},
                                               max_image_size={"longest_edge": 32})
    processor = without_video_processor(SmolVLMProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, image_seq_len=4,
        chat_template=VOCABULARIES["smolvlm"].template)
    vision = _vision(hidden, model_type="smolvlm_vision")
    config = SmolVLMConfig(vision_config=vision, text_config=_text(tokenizer, hidden, layers, "llama"), scale_factor=2,
                           image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    _save(SmolVLMForConditionalGeneration(config), processor, out_dir)


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


def instructblip_tokenizers(trained: PreTrainedTokenizerFast) -> dict[str, PreTrainedTokenizerFast]:
    """InstructBLIP's tokenizer, which must not name the image token (its processor does), and its Q-Former's, which
    marks each prompt's start and end as BERT's does, so an empty prompt is 2 tokens; as the processor's arguments."""
    named = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(trained.backend_tokenizer.to_str()), **named)
    marked = Tokenizer.from_str(trained.backend_tokenizer.to_str())
    marks = [(token, plain.convert_tokens_to_ids(token)) for token in ("<s>", "</s>")]
    marked.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=marks)
    return {"tokenizer": plain, "qformer_tokenizer": PreTrainedTokenizerFast(tokenizer_object=marked, **named)}


def _build_instructblip(out_dir: Path, hidden: int, layers: int) -> None:
    """InstructBLIP: BLIP vision tower, a Q-Former whose 4 query tokens read the image and the prompt, Llama decoder;
    no chat template. Its processor puts the query tokens first and names the image token itself (its tokenizer must
    not), and its Q-Former's tokenizer marks each prompt's start and end as BERT's does, so an empty one is 2 tokens."""
    tokenizers = instructblip_tokenizers(family_tokenizer("instructblip"))
    tokenizer = tokenizers["tokenizer"]
    processor = InstructBlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                                      **tokenizers, num_query_tokens=4)
    qformer = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
               "num_hidden_layers": 2, "num_attention_heads": 2, "encoder_hidden_size": hidden,
               "pad_token_id": tokenizer.pad_token_id}
    config = InstructBlipConfig(vision_config=_vision(hidden, model_type="instructblip_vision_model"),
                                qformer_config=qformer, text_config=_text(tokenizer, hidden, layers, "llama"),
                                num_query_tokens=4, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = InstructBlipForConditionalGeneration(config)
    with torch.no_grad():  # at the 0.02 init a 32-wide image path hardly reads its image or prompt: neither would show
        for parameter in [*model.vision_model.parameters(), *model.qformer.parameters(),
                          model.language_projection.weight]:
            if parameter.dim() > 1:
                parameter.normal_(0.0, parameter[0].numel() ** -0.5)
    _save(model, processor, out_dir)


def _build_janus(out_dir: Path, hidden: int, layers: int) -> None:
    """Janus: SigLIP-style tower and MLP aligner to 16 tokens between begin- and end-of-image tokens, Llama decoder;
    its image-generation VQ-VAE (unused by the probes) as small as its config allows."""
    tokenizer = family_tokenizer("janus")
    processor = JanusProcessor(image_processor=JanusImageProcessorPil(size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, num_image_tokens=16, chat_template=VOCABULARIES["janus"].template)
    vision = _vision(hidden, projection_dim=hidden, num_image_tokens=16, mlp_ratio=2.0)
    vq = {"embed_dim": 8, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
          "channel_multiplier": [1, 1], "num_res_blocks": 1, "num_patches": 4, "projection_dim": hidden,
          "image_token_embed_dim": hidden}
    config = JanusConfig(text_config=_text(tokenizer, hidden, layers, "llama"), vision_config=vision, vq_config=vq,
                         image_token_id=tokenizer.convert_tokens_to_ids(JANUS_TOKENS["image_token"]))
    _save(JanusForConditionalGeneration(config), processor, out_dir)


def _build_mllama(out_dir: Path, hidden: int, layers: int) -> None:
    """Llama 3.2 Vision: a tiled ViT (16-px tiles, up to 2, each 4 patches and a class token) whose projected states
    the decoder's cross-attention layers (every other one, from the first) read; its tanh gates start at zero, so
    they are opened here, or the image would not move the output."""
    tokenizer = family_tokenizer("mllama")
    processor = MllamaProcessor(image_processor=MllamaImageProcessorPil(size={"height": 16, "width": 16},
                                                                        max_image_tiles=2),
                                tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE)
    vision = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_global_layers": 1,
              "attention_heads": 2, "intermediate_layers_indices": [0], "vision_output_dim": 2 * hidden,
              "image_size": 16, "patch_size": 8, "max_num_tiles": 2,
              "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]]}
    text = _text(tokenizer, hidden, layers, "mllama_text_model", cross_attention_layers=list(range(0, layers, 2)))
    config = MllamaConfig(vision_config=vision, text_config=text,
                          image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"))
    model = MllamaForConditionalGeneration(config)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            if hasattr(layer, "cross_attn_attn_gate"):
                layer.cross_attn_attn_gate.fill_(1.0)
                layer.cross_attn_mlp_gate.fill_(1.0)
    _save(model, processor, out_dir)


def fuyu_tokenizer() -> PreTrainedTokenizerFast:
    """Fuyu's tokenizer: its processor drops the first token of the image placeholders (the real tokenizer's
    leading SentencePiece space), so here a leading |SPEAKER| gets a space token before it, the placeholders
    being matched after that normalisation."""
    trained = Tokenizer.from_str(family_tokenizer("fuyu").backend_tokenizer.to_str())
    trained.normalizer = normalizers.Replace(Regex(r"^\|SPEAKER\|(?=\|)"), " |SPEAKER|")
    trained.add_special_tokens([AddedToken(token, normalized=True, special=True) for token in FUYU_IMAGE_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=trained, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def _build_fuyu(out_dir: Path, hidden: int, layers: int) -> None:
    """Fuyu: 8-px patches of an image fitted into 32 px, linearly projected into the input rows of a Persimmon
    decoder, each row of patches ended by |NEWLINE|; no chat template."""
    tokenizer = fuyu_tokenizer()
    image_processor = FuyuImageProcessorPil(size={"height": 32, "width": 32}, patch_size={"height": 8, "width": 8})
    processor = FuyuProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = {"model_type": "persimmon", "vocab_size": len(tokenizer), "hidden_size": hidden,
            "intermediate_size": 2 * hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
            "max_position_embeddings": 512, "qk_layernorm": True, "partial_rotary_factor": 0.5,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}
    config = FuyuConfig(text_config=text, image_size=32, patch_size=8, num_channels=3,
                        image_token_id=tokenizer.convert_tokens_to_ids(FUYU_IMAGE_TOKENS[0]))
    _save(FuyuForCausalLM(config), processor, out_dir)


BUILDERS = {"llava": _build_llava, "llava_next": _build_llava_next, "llava_onevision": _build_llava_onevision,
            "gemma3": _build_gemma3, "internvl": _build_internvl, "aya_vision": _build_aya_vision,
            "qwen2_vl": _build_qwen2_vl, "qwen2_5_vl": _build_qwen2_5_vl, "qwen3_vl": _build_qwen3_vl,
            "glm4v": _build_glm4v, "idefics3": _build_idefics3, "smolvlm": _build_smolvlm,
            "paligemma": _build_paligemma, "instructblip": _build_instructblip, "mllama": _build_mllama,
            "janus": _build_janus, "fuyu": _build_fuyu}



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
