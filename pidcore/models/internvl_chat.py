"""Convert an InternVL2.5 checkpoint (remote code, model_type "internvl_chat": InternViT, the `mlp1` projector and a
Qwen2 or InternLM2 LLM) into a native transformers `internvl` folder that pidcore profiles. Only the source's JSON
files, tokenizer files and safetensors weights are read: none of its code runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (AutoTokenizer, GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration,
                          InternVLProcessor, InternVLVisionConfig, LlamaConfig, PreTrainedTokenizerBase, Qwen2Config)

from pidcore.models.identity import PICKLE_WEIGHTS, SAFETENSORS_INDEX
from pidcore.models.internlm2_tokenizer import internlm2_fast_tokenizer
from pidcore.models.listing import first_few
from pidcore.models.processors import without_video_processor

SAFETENSORS_FILE = "model.safetensors"
# The image tokens of InternVLChatModel.chat, under the names the native InternVLProcessor reads from its tokenizer.
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
# The native processor also reads a video token, which InternVL2.5's vocabularies lack: it is added after them, so
# it has no embedding row (video is never profiled).
VIDEO_TOKEN = "<video>"
# InternVL's image normalisation (its build_transform: ImageNet mean and std).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# The system message of each conversation template (internvl/conversation.py) whose prompt the chat template rebuilds.
SYSTEM_MESSAGES = {
    "internvl2_5": "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                   "多模态大语言模型。",
}
# The `internvl2_5` template (SeparatorStyle.MPT, sep "<|im_end|>\n") as a chat template: its system turn (the
# template's message unless the conversation gives one), then each turn; an image is the <IMG_CONTEXT> placeholder
# the processor expands into <img>, the tile tokens and </img>, followed by "\n" as chat() puts "<image>\n" first.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n{{ default_system_message }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# InternVLChatConfig's and InternVisionConfig's defaults, for fields a config.json leaves out.
CHAT_DEFAULTS = {"use_backbone_lora": 0, "use_llm_lora": 0, "select_layer": -1, "force_image_size": None,
                 "downsample_ratio": 0.5, "template": None, "dynamic_image_size": False, "use_thumbnail": False,
                 "ps_version": "v1", "min_dynamic_patch": 1, "max_dynamic_patch": 6, "llm_config": {}}
VISION_DEFAULTS = {"num_channels": 3, "patch_size": 14, "image_size": 224, "qkv_bias": False, "hidden_size": 3200,
                   "num_attention_heads": 25, "intermediate_size": 12800, "qk_normalization": True,
                   "num_hidden_layers": 48, "hidden_act": "gelu", "norm_type": "rms_norm", "layer_norm_eps": 1e-6,
                   "initializer_factor": 0.1}
# llm_config.architectures[0] -> the native text family that computes the same function.
TEXT_FAMILIES = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2"}
# InternLM2 rope_scaling types and the transformers rope_type that computes them alike.
INTERNLM2_ROPE_TYPES = {"dynamic": "dynamic", "linear": "linear"}


class ConversionError(ValueError):
    """An internvl_chat checkpoint cannot be converted: the error names what is missing or not supported."""


def convert_internvl_chat(source: str | Path, target: str | Path) -> Path:
    """Write the native `internvl` form of the internvl_chat checkpoint folder `source` into `target` (model config,
    safetensors weights, processor and tokenizer) and return `target`."""
    source, target = Path(source), Path(target)
    config = read_source_config(source)
    tokenizer = source_tokenizer(source, text_family(config))
    write_native_model(source, config, tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), target)
    native_processor(config, tokenizer).save_pretrained(target)
    return target


def read_source_config(source: Path) -> dict:
    """The source's config.json as plain JSON, its absent fields at InternVLChatConfig's (and InternVisionConfig's)
    defaults, refused unless it is an internvl_chat config this converter maps."""
    path = source / "config.json"
    if not path.is_file():
        raise ConversionError(f"{source} has no config.json: it is not a checkpoint folder")
    saved = json.loads(path.read_text())
    if saved.get("model_type") != "internvl_chat":
        raise ConversionError(f"{source} is a {saved.get('model_type')!r} checkpoint, not an internvl_chat one")
    config = {**CHAT_DEFAULTS, **saved, "vision_config": {**VISION_DEFAULTS, **saved.get("vision_config", {})}}
    problems = [why for bad, why in (
        (config["ps_version"] != "v2", f"ps_version = {config['ps_version']!r} (its pixel shuffle leaves the feature "
                                       "map transposed; the native model's is 'v2')"),
        (not config["use_thumbnail"], "use_thumbnail = false (the native image processor always adds the thumbnail)"),
        (bool(config["use_backbone_lora"] or config["use_llm_lora"]), "LoRA-wrapped weights (use_backbone_lora / "
                                                                      "use_llm_lora): merge them first"),
        (config["template"] not in SYSTEM_MESSAGES, f"template = {config['template']!r} (only "
                                                    f"{sorted(SYSTEM_MESSAGES)} are rebuilt as chat templates)"),
    ) if bad]
    if problems:
        raise ConversionError(f"cannot convert {source}: {'; '.join(problems)}")
    return config


def text_family(config: dict) -> str:
    """The LLM's family ("qwen2" or "internlm2"), from llm_config.architectures as InternVLChatConfig reads it."""
    architecture = (config["llm_config"].get("architectures") or [None])[0]
    if architecture not in TEXT_FAMILIES:
        raise ConversionError(f"cannot convert an internvl_chat checkpoint whose LLM is {architecture!r}: "
                              f"supported LLM architectures are {sorted(TEXT_FAMILIES)}")
    return TEXT_FAMILIES[architecture]


def num_image_token(config: dict) -> int:
    """Tokens per tile, as InternVLChatModel computes it: (image size / patch size)^2 * downsample_ratio^2."""
    vision = config["vision_config"]
    image_size = config["force_image_size"] or vision["image_size"]
    return int((image_size // vision["patch_size"]) ** 2 * config["downsample_ratio"] ** 2)


def native_config(config: dict, image_token_id: int) -> InternVLConfig:
    """The native InternVLConfig that computes what the source's InternVLChatModel computes."""
    text = qwen2_text_config(config["llm_config"]) if text_family(config) == "qwen2" else \
        internlm2_text_config(config["llm_config"])
    return InternVLConfig(vision_config=vision_config(config["vision_config"]), text_config=text,
                          image_token_id=image_token_id, image_seq_length=num_image_token(config),
                          downsample_ratio=config["downsample_ratio"],
                          projector_hidden_act="gelu",  # mlp1's nn.GELU(), fixed in InternVLChatModel
                          vision_feature_layer=config["select_layer"],
                          vision_feature_select_strategy="default",  # extract_feature drops the class token
                          tie_word_embeddings=False,  # InternVLChatConfig forces it off
                          dtype=config.get("torch_dtype"))


def vision_config(vision: dict) -> InternVLVisionConfig:
    """InternVisionConfig's fields under the native names; InternViT has no final norm (use_mean_pooling)."""
    if vision["qk_normalization"] and vision["layer_norm_eps"] != 1e-6:
        raise ConversionError("the native vision attention normalises queries and keys with eps 1e-6, the source's "
                              f"layer_norm_eps is {vision['layer_norm_eps']}")
    return InternVLVisionConfig(
        hidden_size=vision["hidden_size"], num_hidden_layers=vision["num_hidden_layers"],
        num_attention_heads=vision["num_attention_heads"], intermediate_size=vision["intermediate_size"],
        hidden_act=vision["hidden_act"], attention_bias=vision["qkv_bias"], use_qk_norm=vision["qk_normalization"],
        norm_type=vision["norm_type"], layer_norm_eps=vision["layer_norm_eps"], image_size=vision["image_size"],
        patch_size=vision["patch_size"], num_channels=vision["num_channels"], use_mean_pooling=True,
        layer_scale_init_value=vision["initializer_factor"])


def qwen2_text_config(llm: dict) -> Qwen2Config:
    """The Qwen2 LLM's own config, without the remote-code bookkeeping InternVLChatConfig wrote into it."""
    dropped = {"architectures", "auto_map", "attn_implementation", "model_type", "_name_or_path", "torch_dtype",
               "transformers_version"}
    fields = {key: value for key, value in llm.items() if key not in dropped}
    return Qwen2Config(**{**fields, "tie_word_embeddings": False})


def internlm2_text_config(llm: dict) -> LlamaConfig:
    """InternLM2Config as a LlamaConfig: the same decoder with fused projections (split by the weight renames)."""
    theta = llm.get("rope_theta", 10000)
    scaling = llm.get("rope_scaling")
    if scaling is None:
        rope = {"rope_type": "default", "rope_theta": theta}
    elif scaling.get("type") in INTERNLM2_ROPE_TYPES:
        rope = {"rope_type": INTERNLM2_ROPE_TYPES[scaling["type"]], "factor": scaling["factor"], "rope_theta": theta}
    else:
        raise ConversionError(f"InternLM2 rope_scaling {scaling} is not supported: its types are "
                              f"{sorted(INTERNLM2_ROPE_TYPES)}")
    return LlamaConfig(
        vocab_size=llm["vocab_size"], hidden_size=llm["hidden_size"], intermediate_size=llm["intermediate_size"],
        num_hidden_layers=llm["num_hidden_layers"], num_attention_heads=llm["num_attention_heads"],
        num_key_value_heads=llm.get("num_key_value_heads") or llm["num_attention_heads"],
        hidden_act=llm.get("hidden_act", "silu"), max_position_embeddings=llm.get("max_position_embeddings", 2048),
        rms_norm_eps=llm.get("rms_norm_eps", 1e-6), rope_parameters=rope, attention_bias=llm.get("bias", True),
        mlp_bias=False, bos_token_id=llm.get("bos_token_id"), eos_token_id=llm.get("eos_token_id"),
        pad_token_id=llm.get("pad_token_id"), tie_word_embeddings=False)


def write_native_model(source: Path, config: dict, image_token_id: int, target: Path) -> None:
    """Save the native model holding the source's weights, renamed and split, into `target` (safetensors), after
    checking that each native parameter is filled exactly once. The model is built on the meta device, so no memory
    goes to weights that are replaced; save_pretrained writes its parameters, which all come from the source."""
    native = native_config(config, image_token_id)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(native)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    weights = native_weights(source_weights(source), native)
    check_weights(weights, expected)
    model.load_state_dict(weights, assign=True)
    model.save_pretrained(target)


def source_weights(source: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (name, tensor) of the source's safetensors weights (model.safetensors, or the shards its index names, as
    transformers reads them), one shard after another; pickle files are refused (loading them may run code)."""
    index = source / SAFETENSORS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = [SAFETENSORS_FILE] if (source / SAFETENSORS_FILE).is_file() else []
    if not shards:
        pickles = sorted({path.name for pattern in PICKLE_WEIGHTS for path in source.glob(pattern)})
        found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights file"
        raise ConversionError(f"cannot convert {source}: weights are read from safetensors only, and it holds {found}")
    for shard in shards:
        with safe_open(source / shard, framework="pt") as weights:
            for name in weights.keys():
                yield name, weights.get_tensor(name)


def native_weights(weights: Iterator[tuple[str, torch.Tensor]], native: InternVLConfig) -> dict[str, torch.Tensor]:
    """The source weights under native names (fused q/k/v split), refusing a name produced twice or not mapped."""
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for name, tensor in weights:
        pieces = rename(name, tensor, native)
        if not pieces:
            unmapped.append(name)
        for new_name, piece in pieces.items():
            if new_name in converted:
                raise ConversionError(f"two source weights map to the native parameter {new_name} (the second is "
                                      f"{name}); the checkpoint holds a weight twice")
            converted[new_name] = piece
    if unmapped:
        raise ConversionError(f"{len(unmapped)} source weight(s) have no native counterpart: {first_few(unmapped)}")
    return converted


def rename(name: str, tensor: torch.Tensor, native: InternVLConfig) -> dict[str, torch.Tensor]:
    """The native (name, tensor) pairs of one source weight; empty where the name matches no rule."""
    if name.startswith("vision_model."):
        return _vision_weight(name.removeprefix("vision_model."), tensor)
    if name.startswith("mlp1."):
        layer, _, kind = name.removeprefix("mlp1.").partition(".")
        projector = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}.get(layer)
        return {f"model.multi_modal_projector.{projector}.{kind}": tensor} if projector else {}
    if name.startswith("language_model."):
        return _text_weight(name.removeprefix("language_model."), tensor, native.text_config)
    return {}


# InternViT module names inside an encoder layer -> native ones.
VISION_LAYER_NAMES = {"attn.proj": "attention.projection_layer", "attn.q_norm": "attention.q_norm",
                      "attn.k_norm": "attention.k_norm", "norm1": "layernorm_before", "norm2": "layernorm_after",
                      "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "ls1": "lambda_1", "ls2": "lambda_2"}
VISION_EMBEDDING_NAMES = {"class_embedding": "cls_token", "position_embedding": "position_embeddings",
                          "patch_embedding.weight": "patch_embeddings.projection.weight",
                          "patch_embedding.bias": "patch_embeddings.projection.bias"}


def _vision_weight(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """An InternViT weight under its native name; the fused qkv is split into equal query, key and value parts."""
    tower = "model.vision_tower"
    if name.startswith("embeddings."):
        new = VISION_EMBEDDING_NAMES.get(name.removeprefix("embeddings."))
        return {f"{tower}.embeddings.{new}": tensor} if new else {}
    parts = name.split(".")
    if parts[:2] != ["encoder", "layers"] or len(parts) < 4:
        return {}
    prefix = f"{tower}.encoder.layer.{parts[2]}"
    module, kind = ".".join(parts[3:-1]), parts[-1]
    if module == "attn.qkv":
        return {f"{prefix}.attention.{part}_proj.{kind}": piece
                for part, piece in zip("qkv", tensor.chunk(3, dim=0), strict=True)}
    if module == "" and kind in VISION_LAYER_NAMES:  # ls1 / ls2 are parameters of the layer itself
        return {f"{prefix}.{VISION_LAYER_NAMES[kind]}": tensor}
    new = VISION_LAYER_NAMES.get(module)
    return {f"{prefix}.{new}.{kind}": tensor} if new else {}


# InternLM2 names inside a decoder layer (after "model.layers.N.") -> Llama ones; attention.wqkv is split apart.
INTERNLM2_LAYER_NAMES = {"attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj",
                         "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj",
                         "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
INTERNLM2_MODEL_NAMES = {"model.tok_embeddings.weight": "model.language_model.embed_tokens.weight",
                         "model.norm.weight": "model.language_model.norm.weight", "output.weight": "lm_head.weight"}


def _text_weight(name: str, tensor: torch.Tensor, text: Qwen2Config | LlamaConfig) -> dict[str, torch.Tensor]:
    """An LLM weight under its native name: Qwen2's keep theirs (the head moves to the top), InternLM2's become
    Llama's."""
    if text.model_type == "qwen2":
        if name == "lm_head.weight":
            return {"lm_head.weight": tensor}
        return {f"model.language_model.{name.removeprefix('model.')}": tensor} if name.startswith("model.") else {}
    if name in INTERNLM2_MODEL_NAMES:
        return {INTERNLM2_MODEL_NAMES[name]: tensor}
    parts = name.split(".")
    if parts[:2] != ["model", "layers"] or len(parts) < 5:
        return {}
    prefix = f"model.language_model.layers.{parts[2]}"
    module, kind = ".".join(parts[3:-1]), parts[-1]
    if module == "attention.wqkv":
        query, key, value = split_wqkv(tensor, text)
        return {f"{prefix}.self_attn.q_proj.{kind}": query, f"{prefix}.self_attn.k_proj.{kind}": key,
                f"{prefix}.self_attn.v_proj.{kind}": value}
    new = INTERNLM2_LAYER_NAMES.get(module)
    return {f"{prefix}.{new}.{kind}": tensor} if new else {}


def split_wqkv(tensor: torch.Tensor, text: LlamaConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InternLM2's fused wqkv rows (or bias) as query, key and value: grouped per key-value head, each group holding
    its num_key_value_groups query heads, then one key head, then one value head (its attention's rearrange)."""
    kv_heads = text.num_key_value_heads
    groups = text.num_attention_heads // kv_heads
    head_dim = text.hidden_size // text.num_attention_heads
    grouped = tensor.reshape(kv_heads, groups + 2, head_dim, *tensor.shape[1:])
    query = grouped[:, :groups].reshape(kv_heads * groups * head_dim, *tensor.shape[1:])
    key = grouped[:, groups].reshape(kv_heads * head_dim, *tensor.shape[1:])
    value = grouped[:, groups + 1].reshape(kv_heads * head_dim, *tensor.shape[1:])
    return query.contiguous(), key.contiguous(), value.contiguous()


def check_weights(weights: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse converted weights that leave a native parameter unfilled, fill one the model lacks, or have another
    shape, naming the first few of each."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    shapes = sorted(f"{name} (source {tuple(weights[name].shape)}, native {expected[name]})"
                    for name in set(weights) & set(expected) if tuple(weights[name].shape) != expected[name])
    problems = [f"{len(items)} {what}: {first_few(items)}" for items, what in (
        (missing, "native parameter(s) not filled by any source weight"),
        (extra, "converted weight(s) the native model has no place for"),
        (shapes, "weight(s) of another shape than the native config gives")) if items]
    if problems:
        raise ConversionError(f"the source weights do not fill the native model: {'; '.join(problems)}")


def source_tokenizer(source: Path, family: str) -> PreTrainedTokenizerBase:
    """The source's tokenizer (an InternLM2 one rebuilt as a fast tokenizer) with the image tokens named as the native
    processor reads them, at their existing ids."""
    names = {**IMAGE_TOKENS, "video_token": VIDEO_TOKEN}
    if family == "internlm2":
        tokenizer = internlm2_fast_tokenizer(source, names)
    else:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, extra_special_tokens=names)
    absent = [token for token in IMAGE_TOKENS.values() if token not in tokenizer.get_vocab()]
    if absent:
        raise ConversionError(f"the tokenizer of {source} lacks the image token(s) {absent}")
    return tokenizer


def native_processor(config: dict, tokenizer: PreTrainedTokenizerBase) -> InternVLProcessor:
    """InternVL's image preparation (dynamic tiles of force_image_size pixels, thumbnail, ImageNet normalisation) and
    prompt format as a native processor, without the video processor (which needs torchvision)."""
    size = config["force_image_size"] or config["vision_config"]["image_size"]
    images = GotOcr2ImageProcessorPil(size={"height": size, "width": size},
                                      crop_to_patches=config["dynamic_image_size"],
                                      min_patches=config["min_dynamic_patch"], max_patches=config["max_dynamic_patch"],
                                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    template = CHAT_TEMPLATE.replace("{{ default_system_message }}", SYSTEM_MESSAGES[config["template"]])
    return without_video_processor(InternVLProcessor)(image_processor=images, tokenizer=tokenizer,
                                                      video_processor=None, image_seq_length=num_image_token(config),
                                                      chat_template=template)
