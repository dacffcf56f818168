"""Random-weight VLMs with the dimensions, image resolution and image token counts of real checkpoints, and "-cpu"
variants that keep the token counts but are narrow enough for a 2-core CPU; tokenizers are trained locally.

Every number comes from the checkpoint's public config.json / preprocessor_config.json on the Hugging Face hub, named
next to each preset; a value the hub config leaves out is the transformers default that checkpoint was saved with.
Special-token ids (image, pad, bos, eos) are the local tokenizer's; the vocab rows past its length are unused."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import (
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
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
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
    PretrainedConfig,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    SiglipImageProcessorPil,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from pidcore.devices import resolve_device
from pidcore.models.processors import without_video_processor
from pidcore.models.tiny import (
    CHAT_TEMPLATE,
    FUYU_IMAGE_TOKENS,
    GEMMA3_TEMPLATE,
    GEMMA3_TOKENS,
    IDEFICS3_TEMPLATE,
    INTERNVL_TEMPLATE,
    MLLAMA_TEMPLATE,
    QWEN_TEMPLATE,
    QWEN_TOKENS,
    family_tokenizer,
    fuyu_tokenizer,
    instructblip_tokenizers,
)

# Safetensors shard size of saved presets: a 7B model in bfloat16 comes out as three or four files.
SHARD_SIZE = "5GB"
CPU_SUFFIX = "-cpu"
CPU_DECODER_LAYERS = 4
# The vision tower of a -cpu variant: narrow and shallow, with the real patch size and image size.
CPU_VISION = {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 2}


@dataclass(frozen=True)
class Decoder:
    """The language model's dimensions; `sliding_window` is Gemma 3's local attention span, `cross_attention` the
    layers of Llama 3.2 Vision's decoder that are cross-attention layers reading the image (counted in `layers`)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float
    max_positions: int
    tied_embeddings: bool
    mrope_section: tuple[int, ...] = ()
    sliding_window: int = 0
    cross_attention: tuple[int, ...] = ()


@dataclass(frozen=True)
class Vision:
    """The vision tower's dimensions (Fuyu has none: all 0 but `patch` and `image_size`); `full_attention_blocks` and
    `window` are Qwen2.5-VL's windowed attention, `positions` and `deepstack` Qwen3-VL's learned position grid and the
    blocks whose features also feed the decoder, `global_layers` and `intermediate_layers` Llama 3.2 Vision's gated
    layers after the `layers` local ones and the local layers whose outputs are joined to the last one's."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    patch: int
    image_size: int = 0
    full_attention_blocks: tuple[int, ...] = ()
    window: int = 0
    positions: int = 0
    deepstack: tuple[int, ...] = ()
    global_layers: int = 0
    intermediate_layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Imaging:
    """How images become tokens: the projector / merger / connector and the processor settings.

    feature_layer: the vision layer LLaVA projects. merge: Qwen's spatial merge (tokens = patches / merge**2).
    scale_factor: Idefics3's and InternVL's pixel shuffle (patches per token side). image_seq_len: tokens per tile
    (Idefics3, InternVL) or per image (Gemma 3). min_pixels / max_pixels: Qwen's resizing bounds. longest_edge and
    splitting: Idefics3's resize target and tiling into image_size tiles. grid: LLaVA-OneVision's any-resolution
    layouts, up to grid x grid tiles of image_size. max_tiles: InternVL's and Llama 3.2 Vision's most tiles of
    image_size an image is cut into. canvas: the (height, width) Fuyu's processor fits an image into.
    """

    feature_layer: int = -1
    merge: int = 1
    scale_factor: int = 1
    image_seq_len: int = 0
    min_pixels: int = 0
    max_pixels: int = 0
    longest_edge: int = 0
    splitting: bool = False
    grid: int = 0
    max_tiles: int = 0
    canvas: tuple[int, ...] = ()


@dataclass(frozen=True)
class QFormer:
    """InstructBLIP's Q-Former: a BERT whose `queries` learned tokens (the decoder's image tokens) read the prompt and,
    every `cross_every` layers, the vision tower's states."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    queries: int
    cross_every: int


@dataclass(frozen=True)
class Preset:
    """A named model shape: its family (the config's model type), the checkpoint it copies and the dtype it is
    built in by default; `published_params` is the "Model size" the hub shows for the checkpoint's safetensors
    (0 for a -cpu variant); `qformer` InstructBLIP's connector."""

    name: str
    family: str
    source: str
    decoder: Decoder
    vision: Vision
    imaging: Imaging
    dtype: str = "bfloat16"
    published_params: int = 0
    qformer: QFormer | None = None


REAL_PRESETS = (
    # llava-hf/llava-1.5-7b-hf config.json: text_config vocab 32064, max_position_embeddings 4096, the rest the
    # LlamaConfig defaults of Llama-2-7B (4096 wide, 11008, 32 layers, 32 heads, 32 kv heads, rope theta 1e4);
    # vision_config CLIP ViT-L/14 1024 / 4096 / 24 layers / 16 heads at 336 px; vision_feature_layer -2, "default"
    # strategy (CLS dropped): (336 / 14)**2 = 576 image tokens. preprocessor_config.json: shortest_edge 336, crop 336.
    Preset("llava-1.5-7b", "llava", "llava-hf/llava-1.5-7b-hf",
           Decoder(4096, 11008, 32, 32, 32, 128, 32064, 10000.0, 4096, False),
           Vision(1024, 4096, 24, 16, 14, 336), Imaging(feature_layer=-2), published_params=7_060_000_000),
    # Qwen/Qwen2-VL-2B-Instruct config.json: 1536 wide, 8960, 28 layers, 12 heads, 2 kv heads, vocab 151936, rope
    # theta 1e6, mrope_section [16, 24, 24], tied embeddings, 32768 positions; vision_config the Qwen2VLVisionConfig
    # defaults (depth 32, embed_dim 1280, mlp_ratio 4, 16 heads, patch 14, spatial merge 2, temporal patch 2).
    # preprocessor_config.json: min_pixels 3136, max_pixels 12845056, patch 14, merge 2. 448 x 448 -> 256 tokens.
    Preset("qwen2-vl-2b", "qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct",
           Decoder(1536, 8960, 28, 12, 2, 128, 151936, 1000000.0, 32768, True, (16, 24, 24)),
           Vision(1280, 5120, 32, 16, 14), Imaging(merge=2, min_pixels=3136, max_pixels=12845056),
           published_params=2_210_000_000),
    # Qwen/Qwen2.5-VL-7B-Instruct config.json: 3584 wide, 18944, 28 layers, 28 heads, 4 kv heads, vocab 152064, rope
    # theta 1e6, mrope_section [16, 24, 24], untied, 128000 positions; vision_config hidden 1280, tokens_per_second 2
    # and the Qwen2_5_VLVisionConfig defaults (depth 32, intermediate 3420, 16 heads, patch 14, window 112, full
    # attention in blocks 7, 15, 23, 31, out_hidden_size 3584). preprocessor_config.json as Qwen2-VL's.
    Preset("qwen2.5-vl-7b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct",
           Decoder(3584, 18944, 28, 28, 4, 128, 152064, 1000000.0, 128000, False, (16, 24, 24)),
           Vision(1280, 3420, 32, 16, 14, full_attention_blocks=(7, 15, 23, 31), window=112),
           Imaging(merge=2, min_pixels=3136, max_pixels=12845056), published_params=8_290_000_000),
    # HuggingFaceTB/SmolVLM-Instruct config.json: text 2048 wide, 8192, 24 layers, 32 heads, 32 kv heads, head_dim
    # 64, vocab 49155, rope theta 273768, 16384 positions, untied; vision 1152 / 4304 / 27 layers / 16 heads, patch
    # 14 at 384 px; scale_factor 3, image_seq_len 81. preprocessor_config.json: do_image_splitting true, longest_edge
    # 1536, max_image_size 384: a square image becomes 4 x 4 tiles plus the whole image, 17 x 81 = 1377 tokens.
    Preset("smolvlm-instruct", "idefics3", "HuggingFaceTB/SmolVLM-Instruct",
           Decoder(2048, 8192, 24, 32, 32, 64, 49155, 273768.0, 16384, False),
           Vision(1152, 4304, 27, 16, 14, 384),
           Imaging(scale_factor=3, image_seq_len=81, longest_edge=1536, splitting=True),
           published_params=2_250_000_000),
    # google/paligemma-3b-pt-224 config.json: Gemma-2B text 2048 wide, 16384, 18 layers, 8 heads, 1 kv head, vocab
    # 257216, and the GemmaConfig defaults head_dim 256, rope theta 1e4, 8192 positions, tied embeddings; SigLIP
    # 1152 / 4304 / 27 layers / 16 heads, patch 14 at 224 px, no head, projection_dim 2048: 256 image tokens.
    Preset("paligemma-3b", "paligemma", "google/paligemma-3b-pt-224",
           Decoder(2048, 16384, 18, 8, 1, 256, 257216, 10000.0, 8192, True),
           Vision(1152, 4304, 27, 16, 14, 224), Imaging(), published_params=2_920_000_000),
    # llava-hf/llava-onevision-qwen2-0.5b-ov-hf config.json: Qwen2-0.5B text 896 wide, 4864, 24 layers, 14 heads, 2 kv
    # heads, vocab 152000, rope theta 1e6, 32768 positions, tied; SigLIP 1152 / 4304 / 26 layers / 16 heads, patch 14
    # at 384 px, no head; feature layer -1, "full" strategy, anyres_max_9 over the 6 x 6 pinpoints 384..2304. A
    # 448 x 448 image: (384 / 14)**2 = 729 base tokens plus a 2 x 2 tile grid of 54 x 54 features with a newline per
    # row, 729 + 54 * 55 = 3699 tokens. model.safetensors 1.79 GB in bfloat16.
    Preset("llava-onevision-0.5b", "llava_onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
           Decoder(896, 4864, 24, 14, 2, 64, 152000, 1000000.0, 32768, True),
           Vision(1152, 4304, 26, 16, 14, 384), Imaging(grid=6), published_params=894_000_000),
    # OpenGVLab/InternVL3-2B-hf config.json: Qwen2.5-1.5B text 1536 wide, 8960, 28 layers, 12 heads, 2 kv heads, vocab
    # 151674, rope theta 1e6, 32768 positions, untied (model.safetensors 4.18 GB in bfloat16); InternViT-300M
    # 1024 / 4096 / 24 layers / 16 heads, qkv bias, patch 14 at 448 px; downsample_ratio 0.5, image_seq_length 256.
    # preprocessor_config.json: 448 x 448 tiles, min_patches 1, max_patches 12 (InternVLProcessor crops to patches,
    # plus a thumbnail when there is more than one): a square image is one tile, 256 tokens.
    Preset("internvl3-2b", "internvl", "OpenGVLab/InternVL3-2B-hf",
           Decoder(1536, 8960, 28, 12, 2, 128, 151674, 1000000.0, 32768, False),
           Vision(1024, 4096, 24, 16, 14, 448), Imaging(scale_factor=2, image_seq_len=256, max_tiles=12),
           published_params=2_090_000_000),
    # google/gemma-3-4b-it config.json: text 2560 wide, 10240, 34 layers, sliding window 1024, global rope linearly
    # scaled by 8, the rest the Gemma3TextConfig defaults (8 heads, 4 kv heads, head_dim 256, vocab 262208, rope theta
    # 1e6 global / 1e4 local, 5 sliding layers to 1 global, 131072 positions, tied); SigLIP 1152 / 4304 / 27 layers /
    # 16 heads, patch 14 at 896 px, no head; mm_tokens_per_image 256. preprocessor_config.json: 896 x 896, pan and
    # scan off, image_seq_length 256.
    Preset("gemma-3-4b", "gemma3", "google/gemma-3-4b-it",
           Decoder(2560, 10240, 34, 8, 4, 256, 262208, 1000000.0, 131072, True, sliding_window=1024),
           Vision(1152, 4304, 27, 16, 14, 896), Imaging(image_seq_len=256), published_params=4_300_000_000),
    # Qwen/Qwen3-VL-2B-Instruct config.json: text 2048 wide, 6144, 28 layers, 16 heads, 8 kv heads, head_dim 128,
    # vocab 151936, rope theta 5e6, interleaved mrope_section [24, 20, 20], 262144 positions, tied; vision depth 24,
    # 1024 / 4096 / 16 heads, patch 16, 2304 learned positions, deepstack blocks 5, 11, 17, merge 2, out 2048.
    # preprocessor_config.json: shortest_edge 65536, longest_edge 16777216 pixels, patch 16, merge 2, mean/std 0.5.
    # 448 x 448 -> (448 / 16)**2 / 2**2 = 196 tokens.
    Preset("qwen3-vl-2b", "qwen3_vl", "Qwen/Qwen3-VL-2B-Instruct",
           Decoder(2048, 6144, 28, 16, 8, 128, 151936, 5000000.0, 262144, True, (24, 20, 20)),
           Vision(1024, 4096, 24, 16, 16, positions=2304, deepstack=(5, 11, 17)),
           Imaging(merge=2, min_pixels=65536, max_pixels=16777216), published_params=2_130_000_000),
    # Qwen/Qwen3-VL-4B-Instruct config.json: text 2560 wide, 9728, 36 layers, 32 heads, 8 kv heads, the rest and the
    # vision tower (out 2560) and preprocessor as Qwen3-VL-2B's.
    Preset("qwen3-vl-4b", "qwen3_vl", "Qwen/Qwen3-VL-4B-Instruct",
           Decoder(2560, 9728, 36, 32, 8, 128, 151936, 5000000.0, 262144, True, (24, 20, 20)),
           Vision(1024, 4096, 24, 16, 16, positions=2304, deepstack=(5, 11, 17)),
           Imaging(merge=2, min_pixels=65536, max_pixels=16777216), published_params=4_440_000_000),
    # meta-llama/Llama-3.2-11B-Vision-Instruct config.json: text 4096 wide, 14336, 40 layers of which 3, 8, 13, 18, 23,
    # 28, 33, 38 cross-attend to the image, 32 heads, 8 kv heads, vocab 128256 (+ 8 embedding rows), rope theta 5e5
    # with llama3 scaling (factor 8, low 1, high 4, original 8192), 131072 positions, untied; vision 1280 / 5120 / 32
    # local layers + 8 global / 16 heads, patch 14 at 560 px, intermediate layers 3, 7, 15, 23, 30 (vision_output_dim
    # 7680 = 6 x 1280), max_num_tiles 4. preprocessor_config.json: 560 x 560 tiles, max_image_tiles 4, CLIP mean/std.
    # Every image fills 4 tile slots (padding ones included) of 40**2 patches + a class token: 6404 state rows. Hub
    # "Model size" 10.7B, as public copies of the gated repo show it (their 5 bf16 shards total 21.35 GB).
    Preset("llama-3.2-11b-vision", "mllama", "meta-llama/Llama-3.2-11B-Vision-Instruct",
           Decoder(4096, 14336, 40, 32, 8, 128, 128256, 500000.0, 131072, False,
                   cross_attention=(3, 8, 13, 18, 23, 28, 33, 38)),
           Vision(1280, 5120, 32, 16, 14, 560, global_layers=8, intermediate_layers=(3, 7, 15, 23, 30)),
           Imaging(max_tiles=4), published_params=10_700_000_000),
    # adept/fuyu-8b config.json: Persimmon decoder 4096 wide, 16384 (relu2), 36 layers, 64 heads (head_dim 64, no
    # grouped kv), qk layernorm, partial rotary 0.5, rope theta 25000, 16384 positions, vocab 262144, untied; no vision
    # tower, 30 x 30 x 3 patches linearly projected (image_size 300 is unused). preprocessor_config.json: target 1080 x
    # 1920, pad value 1.0. A 448 x 448 image: ceil(448 / 30)**2 = 225 patch tokens (each row's |NEWLINE| is text).
    # Hub "Model size" 9.41B (two bf16 shards, 18.8 GB).
    Preset("fuyu-8b", "fuyu", "adept/fuyu-8b", Decoder(4096, 16384, 36, 64, 64, 64, 262144, 25000.0, 16384, False),
           Vision(0, 0, 0, 0, 30, 300), Imaging(canvas=(1080, 1920)), published_params=9_410_000_000),
    # Salesforce/instructblip-vicuna-7b config.json (revision 92cb457, which added <image>): vision_config and most of
    # qformer_config the transformers defaults (EVA ViT-g 1408 / 6144 / 39 layers / 16 heads, qkv bias, patch 14 at 224
    # px; Q-Former BERT 768 / 3072 / 12 layers / 12 heads, cross-attention every 2nd layer), Q-Former vocab 30523,
    # num_query_tokens 32; Vicuna-7B text 4096 wide, 11008, 32 layers, 32 heads, rms eps 1e-6, max_sequence_length
    # 2048, vocab 32064 (<image> 32001), rope theta 1e4, untied. preprocessor_config.json: 224 x 224, CLIP mean/std:
    # 32 image tokens whatever the image. Its four float32 shards total 31.66 GB, 7.91B parameters (the hub's "Model
    # size" line was not seen).
    Preset("instructblip-vicuna-7b", "instructblip", "Salesforce/instructblip-vicuna-7b",
           Decoder(4096, 11008, 32, 32, 32, 128, 32064, 10000.0, 2048, False), Vision(1408, 6144, 39, 16, 14, 224),
           Imaging(), published_params=7_910_000_000, qformer=QFormer(768, 3072, 12, 12, 30523, 32, 2)),
)

# Each -cpu variant divides decoder width, intermediate size and vocab by one factor, chosen so the real head_dim
# still divides the width (Qwen2-VL's attention takes head_dim = hidden / heads), which keeps M-RoPE's sections.
CPU_FACTORS = {"llava-1.5-7b": 16, "qwen2-vl-2b": 12, "qwen2.5-vl-7b": 28, "smolvlm-instruct": 16,
               "paligemma-3b": 16, "llava-onevision-0.5b": 7, "internvl3-2b": 6, "gemma-3-4b": 10, "qwen3-vl-2b": 8,
               "qwen3-vl-4b": 10, "llama-3.2-11b-vision": 16, "fuyu-8b": 16, "instructblip-vicuna-7b": 16}


def _cpu_variant(preset: Preset, factor: int) -> Preset:
    """The same token counts, prompt format and head_dim with the decoder narrowed by `factor` to a few layers (the
    real cross-attention layers among them kept) and a narrow, shallow vision tower and Q-Former (real patch and image
    size; Qwen3-VL's first block feeds the decoder, Llama 3.2 Vision's first layer joins the last and one is global)."""
    decoder = preset.decoder
    heads = max(1, decoder.hidden // factor // decoder.head_dim)
    kv_heads = max(1, heads * decoder.kv_heads // decoder.heads)
    small = replace(decoder, hidden=decoder.hidden // factor, intermediate=decoder.intermediate // factor,
                    layers=CPU_DECODER_LAYERS, heads=heads, kv_heads=kv_heads, vocab=decoder.vocab // factor,
                    cross_attention=tuple(layer for layer in decoder.cross_attention if layer < CPU_DECODER_LAYERS))
    vision = preset.vision
    if vision.layers:
        vision = replace(vision, **CPU_VISION,
                         full_attention_blocks=(CPU_VISION["layers"] - 1,) if vision.full_attention_blocks else (),
                         deepstack=(0,) if vision.deepstack else (), global_layers=min(1, vision.global_layers),
                         intermediate_layers=(0,) if vision.intermediate_layers else ())
    if preset.family == "qwen2_vl":
        vision = replace(vision, intermediate=vision.hidden * (preset.vision.intermediate // preset.vision.hidden))
    qformer = replace(preset.qformer, **CPU_VISION) if preset.qformer else None
    return replace(preset, name=preset.name + CPU_SUFFIX, decoder=small, vision=vision, dtype="float32",
                   published_params=0, qformer=qformer)


PRESETS: dict[str, Preset] = {
    **{preset.name: preset for preset in REAL_PRESETS},
    **{preset.name + CPU_SUFFIX: _cpu_variant(preset, CPU_FACTORS[preset.name]) for preset in REAL_PRESETS},
}


def preset_named(name: str) -> Preset:
    """The preset called `name`, or an error listing them all."""
    if name not in PRESETS:
        raise ValueError(f"no model preset named {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict:
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def _llama(decoder: Decoder, tokenizer: PreTrainedTokenizerFast) -> dict:
    """A Llama decoder's config fields (LLaVA's and Idefics3's language model)."""
    return {"model_type": "llama", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim, "max_position_embeddings": decoder.max_positions, "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta},
            "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}


def _llava_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    """LLaVA: CLIP vision tower, two-layer GELU projector, Llama decoder."""
    vision = preset.vision
    tower = CLIPVisionConfig(hidden_size=vision.hidden, intermediate_size=vision.intermediate,
                             num_hidden_layers=vision.layers, num_attention_heads=vision.heads,
                             image_size=vision.image_size, patch_size=vision.patch, projection_dim=768)
    return LlavaConfig(vision_config=tower, text_config=LlamaConfig(**_llama(preset.decoder, tokenizer)),
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
                       vision_feature_layer=preset.imaging.feature_layer, vision_feature_select_strategy="default",
                       tie_word_embeddings=preset.decoder.tied_embeddings)


def _qwen_text(preset: Preset, tokenizer: PreTrainedTokenizerFast, model_type: str) -> dict:
    decoder = preset.decoder
    return {"model_type": model_type, "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "max_position_embeddings": decoder.max_positions, "max_window_layers": decoder.layers,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": decoder.tied_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta,
                                "mrope_section": list(decoder.mrope_section)}, **_token_ids(tokenizer)}


def _qwen_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_TOKENS}
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}


def _qwen2_vl_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    """Qwen2-VL: ViT with 2x2 patch merging into the decoder width, Qwen2 decoder with M-RoPE."""
    vision = preset.vision
    tower = {"depth": vision.layers, "embed_dim": vision.hidden, "mlp_ratio": vision.intermediate // vision.hidden,
             "num_heads": vision.heads, "hidden_size": preset.decoder.hidden, "patch_size": vision.patch,
             "spatial_merge_size": preset.imaging.merge, "temporal_patch_size": 2, "in_channels": 3}
    return Qwen2VLConfig(text_config=_qwen_text(preset, tokenizer, "qwen2_vl_text"), vision_config=tower,
                         tie_word_embeddings=preset.decoder.tied_embeddings, **_qwen_token_ids(tokenizer))


def _qwen2_5_vl_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL: windowed-attention SwiGLU ViT, patch merger into the decoder width, Qwen2 decoder with M-RoPE."""
    vision = preset.vision
    tower = {"depth": vision.layers, "hidden_size": vision.hidden, "intermediate_size": vision.intermediate,
             "num_heads": vision.heads, "out_hidden_size": preset.decoder.hidden, "patch_size": vision.patch,
             "spatial_merge_size": preset.imaging.merge, "temporal_patch_size": 2, "in_channels": 3,
             "window_size": vision.window, "fullatt_block_indexes": list(vision.full_attention_blocks),
             "tokens_per_second": 2}
    return Qwen2_5_VLConfig(text_config=_qwen_text(preset, tokenizer, "qwen2_5_vl_text"), vision_config=tower,
                            tie_word_embeddings=preset.decoder.tied_embeddings, **_qwen_token_ids(tokenizer))


def _siglip(vision: Vision) -> dict:
    return {"hidden_size": vision.hidden, "intermediate_size": vision.intermediate,
            "num_hidden_layers": vision.layers, "num_attention_heads": vision.heads, "patch_size": vision.patch,
            "image_size": vision.image_size}


def _idefics3_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> Idefics3Config:
    """Idefics3 / SmolVLM: SigLIP-style vision tower, pixel-shuffle connector, Llama decoder."""
    return Idefics3Config(vision_config=_siglip(preset.vision), text_config=_llama(preset.decoder, tokenizer),
                          image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                          scale_factor=preset.imaging.scale_factor, tie_word_embeddings=preset.decoder.tied_embeddings)


def _paligemma_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> PaliGemmaConfig:
    """PaliGemma: SigLIP vision tower without its head, linear projector, Gemma decoder."""
    decoder = preset.decoder
    text = {"model_type": "gemma", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim, "max_position_embeddings": decoder.max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta},
            "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}
    vision = {**_siglip(preset.vision), "projection_dim": decoder.hidden, "vision_use_head": False}
    return PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=decoder.hidden,
                           image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                           tie_word_embeddings=decoder.tied_embeddings)


def _qwen2(decoder: Decoder, tokenizer: PreTrainedTokenizerFast) -> dict:
    """A Qwen2 decoder's config fields (LLaVA-OneVision's and InternVL's language model; head_dim = width / heads)."""
    return {"model_type": "qwen2", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "max_position_embeddings": decoder.max_positions, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta},
            "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}


def _pinpoints(preset: Preset) -> list[list[int]]:
    """LLaVA-OneVision's any-resolution layouts: every grid of up to `grid` x `grid` tiles of image_size."""
    sides = [preset.vision.image_size * tiles for tiles in range(1, preset.imaging.grid + 1)]
    return [[height, width] for height in sides for width in sides]


def _llava_onevision_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> LlavaOnevisionConfig:
    """LLaVA-OneVision: SigLIP tower without its head on any-resolution tiles, GELU projector, Qwen2 decoder."""
    return LlavaOnevisionConfig(
        vision_config={**_siglip(preset.vision), "model_type": "siglip_vision_model", "vision_use_head": False},
        text_config=_qwen2(preset.decoder, tokenizer), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), image_grid_pinpoints=_pinpoints(preset),
        vision_feature_layer=preset.imaging.feature_layer, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9", tie_word_embeddings=preset.decoder.tied_embeddings)


def _internvl_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> InternVLConfig:
    """InternVL (-hf): InternViT with qkv bias on image_size tiles, pixel shuffle and MLP projector, Qwen2 decoder."""
    vision, imaging = preset.vision, preset.imaging
    tower = {"model_type": "internvl_vision", "hidden_size": vision.hidden, "intermediate_size": vision.intermediate,
             "num_hidden_layers": vision.layers, "num_attention_heads": vision.heads, "attention_bias": True,
             "image_size": [vision.image_size] * 2, "patch_size": [vision.patch] * 2}
    return InternVLConfig(vision_config=tower, text_config=_qwen2(preset.decoder, tokenizer),
                          image_seq_length=imaging.image_seq_len, downsample_ratio=1 / imaging.scale_factor,
                          image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                          tie_word_embeddings=preset.decoder.tied_embeddings)


def _gemma3_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> Gemma3Config:
    """Gemma 3: SigLIP tower pooled to image_seq_len soft tokens, Gemma 3 decoder with five sliding-window layers to
    one global (gemma-3-4b-it: global rope theta 1e6 scaled linearly by 8, local 1e4); a -cpu variant too shallow for
    a global layer makes its last one global."""
    decoder = preset.decoder
    layer_types = ["sliding_attention" if (index + 1) % 6 else "full_attention" for index in range(decoder.layers)]
    if "full_attention" not in layer_types:
        layer_types[-1] = "full_attention"
    rope = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": decoder.rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    text = {"model_type": "gemma3_text", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim, "query_pre_attn_scalar": decoder.head_dim,
            "max_position_embeddings": decoder.max_positions, "sliding_window": decoder.sliding_window,
            "layer_types": layer_types, "rope_parameters": rope, "tie_word_embeddings": decoder.tied_embeddings,
            **_token_ids(tokenizer)}
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in GEMMA3_TOKENS.items()}
    vision = {**_siglip(preset.vision), "model_type": "siglip_vision_model", "vision_use_head": False}
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=preset.imaging.image_seq_len,
                        boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
                        image_token_index=ids["image_token"], tie_word_embeddings=decoder.tied_embeddings)


def _qwen3_vl_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLConfig:
    """Qwen3-VL: ViT with interpolated learned positions, patch merging and deepstack features into the first decoder
    layers, Qwen3 decoder with interleaved M-RoPE."""
    decoder, vision = preset.decoder, preset.vision
    rope = {"rope_type": "default", "rope_theta": decoder.rope_theta, "mrope_interleaved": True,
            "mrope_section": list(decoder.mrope_section)}
    text = {"model_type": "qwen3_vl_text", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "num_key_value_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim, "max_position_embeddings": decoder.max_positions, "rms_norm_eps": 1e-6,
            "rope_parameters": rope, "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}
    tower = {"depth": vision.layers, "hidden_size": vision.hidden, "intermediate_size": vision.intermediate,
             "num_heads": vision.heads, "out_hidden_size": decoder.hidden, "patch_size": vision.patch,
             "spatial_merge_size": preset.imaging.merge, "temporal_patch_size": 2, "in_channels": 3,
             "num_position_embeddings": vision.positions, "deepstack_visual_indexes": list(vision.deepstack)}
    return Qwen3VLConfig(text_config=text, vision_config=tower, tie_word_embeddings=decoder.tied_embeddings,
                         **_qwen_token_ids(tokenizer))


def _aspect_ratios(tiles: int) -> list[list[int]]:
    """Llama 3.2 Vision's tile layouts (rows, columns) of at most `tiles` tiles, in its image processor's order."""
    return [[rows, columns] for rows in range(1, tiles + 1) for columns in range(1, tiles // rows + 1)]


def _mllama_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> MllamaConfig:
    """Llama 3.2 Vision: tiled ViT (local layers, then gated global ones; chosen local layers' outputs joined to the
    last one's) projected into states its decoder's cross-attention layers read; rope scaled as Llama 3.1's
    (config.json: llama3, factor 8, low / high frequency factors 1 / 4, original 8192 positions)."""
    decoder, vision, tiles = preset.decoder, preset.vision, preset.imaging.max_tiles
    rope = {"rope_type": "llama3", "rope_theta": decoder.rope_theta, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    text = {"vocab_size": decoder.vocab, "hidden_size": decoder.hidden, "intermediate_size": decoder.intermediate,
            "num_hidden_layers": decoder.layers, "num_attention_heads": decoder.heads,
            "num_key_value_heads": decoder.kv_heads, "max_position_embeddings": decoder.max_positions,
            "rms_norm_eps": 1e-5, "rope_parameters": rope, "cross_attention_layers": list(decoder.cross_attention),
            "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}
    tower = {"hidden_size": vision.hidden, "intermediate_size": vision.intermediate, "num_hidden_layers": vision.layers,
             "num_global_layers": vision.global_layers, "attention_heads": vision.heads,
             "intermediate_layers_indices": list(vision.intermediate_layers),
             "vision_output_dim": vision.hidden * (len(vision.intermediate_layers) + 1),
             "image_size": vision.image_size, "patch_size": vision.patch, "max_num_tiles": tiles,
             "supported_aspect_ratios": _aspect_ratios(tiles)}
    return MllamaConfig(vision_config=tower, text_config=text,
                        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"))


def _fuyu_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> FuyuConfig:
    """Fuyu: image patches linearly projected into the rows of a Persimmon decoder (squared-ReLU MLP, query / key
    layer norms, rotary embedding on half of each head)."""
    decoder = preset.decoder
    text = {"model_type": "persimmon", "vocab_size": decoder.vocab, "hidden_size": decoder.hidden,
            "intermediate_size": decoder.intermediate, "num_hidden_layers": decoder.layers,
            "num_attention_heads": decoder.heads, "max_position_embeddings": decoder.max_positions,
            "hidden_act": "relu2", "qk_layernorm": True, "partial_rotary_factor": 0.5, "layer_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta},
            "tie_word_embeddings": decoder.tied_embeddings, **_token_ids(tokenizer)}
    return FuyuConfig(text_config=text, image_size=preset.vision.image_size, patch_size=preset.vision.patch,
                      num_channels=3, image_token_id=tokenizer.convert_tokens_to_ids(FUYU_IMAGE_TOKENS[0]),
                      tie_word_embeddings=decoder.tied_embeddings)


def _instructblip_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> InstructBlipConfig:
    """InstructBLIP: EVA ViT (qkv bias), a Q-Former whose query tokens read the prompt and the image, their states
    projected into a Vicuna (Llama) decoder (rms eps 1e-6)."""
    vision, qformer = preset.vision, preset.qformer
    tower = {"hidden_size": vision.hidden, "intermediate_size": vision.intermediate,
             "num_hidden_layers": vision.layers, "num_attention_heads": vision.heads, "image_size": vision.image_size,
             "patch_size": vision.patch, "qkv_bias": True}
    bert = {"vocab_size": qformer.vocab, "hidden_size": qformer.hidden, "intermediate_size": qformer.intermediate,
            "num_hidden_layers": qformer.layers, "num_attention_heads": qformer.heads,
            "cross_attention_frequency": qformer.cross_every, "encoder_hidden_size": vision.hidden,
            "pad_token_id": tokenizer.pad_token_id}
    text = {**_llama(preset.decoder, tokenizer), "rms_norm_eps": 1e-6}
    return InstructBlipConfig(vision_config=tower, qformer_config=bert, text_config=text,
                              num_query_tokens=qformer.queries, tie_word_embeddings=preset.decoder.tied_embeddings,
                              image_token_id=tokenizer.convert_tokens_to_ids("<image>"))


CONFIGS = {"llava": _llava_config, "qwen2_vl": _qwen2_vl_config, "qwen2_5_vl": _qwen2_5_vl_config,
           "idefics3": _idefics3_config, "paligemma": _paligemma_config, "llava_onevision": _llava_onevision_config,
           "internvl": _internvl_config, "gemma3": _gemma3_config, "qwen3_vl": _qwen3_vl_config,
           "mllama": _mllama_config, "fuyu": _fuyu_config, "instructblip": _instructblip_config}
MODEL_CLASSES = {"llava": LlavaForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration,
                 "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration, "idefics3": Idefics3ForConditionalGeneration,
                 "paligemma": PaliGemmaForConditionalGeneration,
                 "llava_onevision": LlavaOnevisionForConditionalGeneration,
                 "internvl": InternVLForConditionalGeneration, "gemma3": Gemma3ForConditionalGeneration,
                 "qwen3_vl": Qwen3VLForConditionalGeneration, "mllama": MllamaForConditionalGeneration,
                 "fuyu": FuyuForCausalLM, "instructblip": InstructBlipForConditionalGeneration}


def preset_config(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The model config of `preset`, with the special-token ids of `tokenizer`."""
    if preset.decoder.vocab < len(tokenizer):
        raise ValueError(f"preset {preset.name!r} has a vocab of {preset.decoder.vocab}, smaller than the local "
                         f"tokenizer's {len(tokenizer)} tokens")
    return CONFIGS[preset.family](preset, tokenizer)


def _save_processor(preset: Preset, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """Save the processor that gives the checkpoint's image resolution and image token counts."""
    vision, imaging = preset.vision, preset.imaging
    if preset.family in ("qwen2_vl", "qwen2_5_vl"):
        # Saved without a video processor (it needs torchvision); pidcore.models.processors loads it back.
        tokenizer.save_pretrained(out_dir)
        Qwen2VLImageProcessorPil(min_pixels=imaging.min_pixels, max_pixels=imaging.max_pixels,
                                 patch_size=vision.patch, merge_size=imaging.merge,
                                 temporal_patch_size=2).save_pretrained(out_dir)
        return
    _processor(preset, tokenizer).save_pretrained(out_dir)


def _processor(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> ProcessorMixin:
    """The checkpoint's processor (the Qwen-VL and LLaVA-OneVision ones without their torchvision video processor)."""
    vision, imaging = preset.vision, preset.imaging
    side = {"height": vision.image_size, "width": vision.image_size}
    if preset.family == "llava":
        images = CLIPImageProcessorPil(size={"shortest_edge": vision.image_size}, crop_size=side)
        return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision.patch,
                              num_additional_image_tokens=1, vision_feature_select_strategy="default",
                              chat_template=CHAT_TEMPLATE)
    if preset.family == "idefics3":
        images = Idefics3ImageProcessorPil(do_image_splitting=imaging.splitting,
                                           size={"longest_edge": imaging.longest_edge},
                                           max_image_size={"longest_edge": vision.image_size})
        return Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=imaging.image_seq_len,
                                 chat_template=IDEFICS3_TEMPLATE)
    if preset.family == "llava_onevision":
        images = LlavaOnevisionImageProcessorPil(size=side, image_grid_pinpoints=_pinpoints(preset))
        return without_video_processor(LlavaOnevisionProcessor)(
            image_processor=images, tokenizer=tokenizer, num_image_tokens=(vision.image_size // vision.patch) ** 2,
            vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", chat_template=CHAT_TEMPLATE)
    if preset.family == "internvl":
        images = GotOcr2ImageProcessorPil(size=side, crop_to_patches=True, min_patches=1,
                                          max_patches=imaging.max_tiles)
        return without_video_processor(InternVLProcessor)(image_processor=images, tokenizer=tokenizer,
                                                          image_seq_length=imaging.image_seq_len,
                                                          chat_template=INTERNVL_TEMPLATE)
    if preset.family == "gemma3":
        images = Gemma3ImageProcessorPil(size=side, do_pan_and_scan=False)
        return Gemma3Processor(image_processor=images, tokenizer=tokenizer, image_seq_length=imaging.image_seq_len,
                               chat_template=GEMMA3_TEMPLATE)
    if preset.family == "qwen3_vl":
        images = Qwen2VLImageProcessorPil(min_pixels=imaging.min_pixels, max_pixels=imaging.max_pixels,
                                          patch_size=vision.patch, merge_size=imaging.merge, temporal_patch_size=2,
                                          image_mean=[0.5] * 3, image_std=[0.5] * 3)
        return without_video_processor(Qwen3VLProcessor)(image_processor=images, tokenizer=tokenizer,
                                                         chat_template=QWEN_TEMPLATE)
    if preset.family == "mllama":
        images = MllamaImageProcessorPil(size=side, max_image_tiles=imaging.max_tiles, image_mean=OPENAI_CLIP_MEAN,
                                         image_std=OPENAI_CLIP_STD)
        return MllamaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE)
    if preset.family == "fuyu":
        height, width = imaging.canvas
        images = FuyuImageProcessorPil(size={"height": height, "width": width},
                                       patch_size={"height": vision.patch, "width": vision.patch})
        return FuyuProcessor(image_processor=images, tokenizer=fuyu_tokenizer())
    if preset.family == "instructblip":
        return InstructBlipProcessor(image_processor=BlipImageProcessorPil(size=side),
                                     **instructblip_tokenizers(tokenizer), num_query_tokens=preset.qformer.queries)
    tokens = (vision.image_size // vision.patch) ** 2
    images = SiglipImageProcessorPil(size=side, image_seq_length=tokens)
    images.image_seq_length = tokens
    return PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer)


def count_parameters(name: str) -> int:
    """Parameters of the preset's model, counted on the meta device (nothing is allocated)."""
    preset = preset_named(name)
    config = preset_config(preset, family_tokenizer(preset.family))
    with torch.device("meta"):
        model = MODEL_CLASSES[preset.family](config)
    return sum(parameter.numel() for parameter in model.parameters())


def build_preset(name: str, out_dir: str | Path, dtype: str | None = None, seed: int = 0,
                 device: str = "cpu") -> Path:
    """Build, save (safetensors shards) and return the folder of a random model shaped like preset `name`, created
    directly in `dtype` (default: the preset's) on `device`, so a 7B model never exists in float32 and initialises
    in seconds on a GPU (about two minutes on two CPU cores)."""
    preset = preset_named(name)
    weights_dtype = getattr(torch, dtype or preset.dtype, None)
    if not isinstance(weights_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = family_tokenizer(preset.family)
    config = preset_config(preset, tokenizer)
    with torch.random.fork_rng(), torch.device(resolve_device(device)):
        torch.manual_seed(seed)
        model = MODEL_CLASSES[preset.family]._from_config(config, dtype=weights_dtype)
    model.save_pretrained(out_dir, max_shard_size=SHARD_SIZE)
    _save_processor(preset, tokenizer, out_dir)
    return out_dir
