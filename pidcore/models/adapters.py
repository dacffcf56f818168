"""The one table of model-family differences, keyed by the config's model_type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from transformers import Glm4vProcessor, InternVLProcessor, LlavaOnevisionProcessor, Qwen3VLProcessor, SmolVLMProcessor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pidcore.models.internvl_chat import convert_internvl_chat
from pidcore.models.paper_images import PAPER_QWEN_PIXEL_BOUNDS, qwen_utils_image
from pidcore.models.processors import (load_fuyu_processor, load_qwen2_5_vl_processor, load_qwen2_vl_processor,
                                       loader_without_video)
from pidcore.probes.conventions import LLAMA_SCRIPT_CONVENTIONS, QWEN_SCRIPT_CONVENTIONS, SHARED_CONVENTIONS
from pidcore.probes.mllama_vision import reference_intermediates

# The forward keyword by which transformers takes pre-encoded images ({"image": features}).
MM_ENCODER_OUTPUTS = "mm_encoder_outputs"


@dataclass(frozen=True)
class Adapter:
    """What the probing engine must know about a family beyond get_decoder() and get_output_embeddings().

    plain_prompt: for families without a chat template, the prompt as a format string over {image} (the
    processor's image token) and {text}. processor_suffix_tokens: tokens the processor appends after any text.
    paper_script: the paper's stage-2 script for the family (None: it has none); paper_conventions: the probe
    conventions `published` applies (pidcore.probes.conventions), where it has none, those that do not depend
    on the model class (SHARED_CONVENTIONS).
    paper_image: the image preparation of its script, and paper_pixel_bounds: the processor's (min, max) pixels
    it sets (the `images` convention); rope_positions: the model computes positions with get_rope_index (M-RoPE),
    which the `positions` convention replaces by plain ones in the masked rows.
    logit_scale_attr: the text-config field by which the model's head multiplies its logits (Aya Vision's
    logit_scale), which the lens's read-out must apply too. masking: the strategy (pidcore.probes.hooks.MASKINGS)
    that removes the image wherever the family lets it enter the decoder: "merged_rows" where it enters only as
    rows of the decoder's input embeddings, "merged_rows_deepstack" where image features are also added to later
    layers (Qwen3-VL). instruction_inputs: the processor outputs through which the family's image features read the
    prompt (InstructBLIP's Q-Former reads the instruction), so that its image tokens carry the question and the
    image-only probe is complete only where those read an empty instruction in its row (not under the `instruction`
    convention, the paper's).
    Where the image enters the decoder not as token rows but as cross-attention states (Llama 3.2 Vision, masking
    "cross_attention"): encode_image computes them from the processor outputs (model, **inputs; in pooler_output),
    image_input is the forward keyword that takes them pre-encoded (else transformers' mm_encoder_outputs), and
    image_rows counts a sample's state rows (config, processor outputs), which follow its token rows in the masks.
    processor_kwargs: further arguments of every processor call (Fuyu's return_legacy_image_output=False, without
    which it returns its patches as image_patches, not pixel_values). features_attr: the field of the image
    features output (get_image_features, encode_image) that holds the features the forward takes (Fuyu's
    last_hidden_state).
    """

    family: str
    image_token_attr: str
    final_norm_attr: str = "norm"
    layers_attr: str = "layers"
    load_processor: Callable[[str, bool, str | None], object] | None = None
    plain_prompt: str | None = None
    processor_suffix_tokens: int = 0
    vision_module: str = "model.vision_tower"
    projector_module: str = "model.multi_modal_projector"
    paper_script: str | None = None
    paper_conventions: frozenset[str] = SHARED_CONVENTIONS
    paper_image: Callable | None = None
    paper_pixel_bounds: tuple[int, int] | None = None
    rope_positions: bool = False
    logit_scale_attr: str | None = None
    masking: str = "merged_rows"
    instruction_inputs: tuple[str, ...] = ()
    encode_image: Callable | None = None
    image_input: str = MM_ENCODER_OUTPUTS
    image_rows: Callable[[object, dict], int] | None = None
    processor_kwargs: dict[str, object] = field(default_factory=dict)
    features_attr: str = "pooler_output"


def _paper_qwen(script: str) -> dict:
    """The adapter fields of a Qwen-VL family whose stage-2 script the paper published."""
    return {"paper_script": f"models_scripts/general_models/embeds/{script}",
            "paper_conventions": QWEN_SCRIPT_CONVENTIONS,
            "paper_image": qwen_utils_image, "paper_pixel_bounds": PAPER_QWEN_PIXEL_BOUNDS, "rope_positions": True}


def _mllama_cross_attention_states(model, pixel_values, aspect_ratio_ids, aspect_ratio_mask,
                                   **unused: object) -> BaseModelOutputWithPooling:
    """Llama 3.2 Vision's image as its forward computes it (it has no get_image_features): the projected vision
    states its cross-attention layers read, [images x tiles, patches, d] (padding tiles included), with the
    intermediate vision layers its reference code picks (pidcore.probes.mllama_vision)."""
    inner = model.model
    with reference_intermediates(model):
        states = inner.vision_model(pixel_values=pixel_values, aspect_ratio_ids=aspect_ratio_ids,
                                    aspect_ratio_mask=aspect_ratio_mask).last_hidden_state
    states = inner.multi_modal_projector(states).reshape(-1, states.shape[-2], inner.hidden_size)
    return BaseModelOutputWithPooling(pooler_output=states)


def _mllama_image_rows(config, inputs: dict) -> int:
    """Llama 3.2 Vision's cross-attention state rows of one sample: every tile of every image (padding tiles
    included, which its cross_attention_mask hides), each tile's patches and class token."""
    vision = config.vision_config
    return inputs["pixel_values"].shape[1:3].numel() * ((vision.image_size // vision.patch_size) ** 2 + 1)


def _inner_image_features(model, pixel_values, **unused: object) -> BaseModelOutputWithPooling:
    """The image features from the inner model, for families whose outer model has no get_image_features (Janus's
    generation model, FuyuForCausalLM)."""
    return model.model.get_image_features(pixel_values, return_dict=True)


ADAPTERS: dict[str, Adapter] = {
    "llava": Adapter("llava", image_token_attr="image_token_index"),
    "llava_next": Adapter("llava_next", image_token_attr="image_token_index"),
    "llava_onevision": Adapter("llava_onevision", image_token_attr="image_token_index",
                               load_processor=loader_without_video(LlavaOnevisionProcessor)),
    "gemma3": Adapter("gemma3", image_token_attr="image_token_index"),
    "internvl": Adapter("internvl", image_token_attr="image_token_id",
                        load_processor=loader_without_video(InternVLProcessor)),
    # Aya Vision's head multiplies its logits by the text config's logit_scale; the lens must too.
    "aya_vision": Adapter("aya_vision", image_token_attr="image_token_index", logit_scale_attr="logit_scale"),
    # Qwen3-VL adds "deepstack" image features to the image positions after early decoder layers.
    "qwen3_vl": Adapter("qwen3_vl", image_token_attr="image_token_id",
                        load_processor=loader_without_video(Qwen3VLProcessor), vision_module="model.visual",
                        projector_module="model.visual.merger", rope_positions=True, masking="merged_rows_deepstack"),
    # GLM-4.1V's M-RoPE positions need the processor's mm_token_type_ids, which pass through with its other outputs.
    "glm4v": Adapter("glm4v", image_token_attr="image_token_id", load_processor=loader_without_video(Glm4vProcessor),
                     vision_module="model.visual", projector_module="model.visual.merger", rope_positions=True),
    "idefics3": Adapter("idefics3", image_token_attr="image_token_id", vision_module="model.vision_model",
                        projector_module="model.connector"),
    "smolvlm": Adapter("smolvlm", image_token_attr="image_token_id",
                       load_processor=loader_without_video(SmolVLMProcessor), vision_module="model.vision_model",
                       projector_module="model.connector"),
    "qwen2_vl": Adapter("qwen2_vl", image_token_attr="image_token_id", load_processor=load_qwen2_vl_processor,
                        vision_module="model.visual", projector_module="model.visual.merger",
                        **_paper_qwen("qwen2_small_embed.py")),
    "qwen2_5_vl": Adapter("qwen2_5_vl", image_token_attr="image_token_id", load_processor=load_qwen2_5_vl_processor,
                          vision_module="model.visual", projector_module="model.visual.merger",
                          **_paper_qwen("qwen25_small_embed.py")),
    # PaliGemma has no chat template: its processor puts <bos> after the image tokens and appends "\n" to the
    # prompt. Its token_type_ids (bidirectional prefix) pass through with the other processor outputs.
    "paligemma": Adapter("paligemma", image_token_attr="image_token_index", plain_prompt="{image}{text}",
                         processor_suffix_tokens=1),
    # InstructBLIP's processor puts the query tokens before the prompt itself, and its Q-Former reads the prompt.
    # The paper's script (inblip_embed.py) follows the shared conventions and two of its own, the Q-Former's; it
    # published no InstructBLIP stage 1 (devis/instructblip_devi.py is empty), so `statistics` is the shared one.
    "instructblip": Adapter("instructblip", image_token_attr="image_token_id", plain_prompt="{text}",
                            vision_module="vision_model", projector_module="language_projection",
                            instruction_inputs=("qformer_input_ids", "qformer_attention_mask"),
                            paper_script="models_scripts/general_models/embeds/inblip_embed.py",
                            paper_conventions=SHARED_CONVENTIONS | {"instruction", "qformer_positions"}),
    # Llama 3.2 Vision: the image enters only through the cross-attention layers interleaved in the decoder, as
    # cross_attention_states; its <|image|> token is neither image nor masked text. The paper's script
    # (llama_11b_embed.py) replaces those states by noise and takes x1 as their mean, as the strategy does; its
    # stage 1 (devis/llama_11b_devi.py) takes one std per modality and the text from the in-context span. Its chat
    # template starts with <|begin_of_text|>, so the processor must not add another (add_special_tokens=False, as
    # the model card and the paper's scripts call it).
    "mllama": Adapter("mllama", image_token_attr="image_token_index", vision_module="model.vision_model",
                      masking="cross_attention", encode_image=_mllama_cross_attention_states,
                      image_input="cross_attention_states", image_rows=_mllama_image_rows,
                      processor_kwargs={"add_special_tokens": False},
                      paper_script="models_scripts/general_models/embeds/llama_11b_embed.py",
                      paper_conventions=LLAMA_SCRIPT_CONVENTIONS),
    # Janus (its understanding path): SigLIP tower and MLP aligner into merged rows; its image-generation VQ-VAE and
    # head are not used.
    "janus": Adapter("janus", image_token_attr="image_token_id", vision_module="model.vision_model",
                     projector_module="model.aligner", encode_image=_inner_image_features),
    # Fuyu: image patches linearly projected (vision_embed_tokens) into merged rows of a Persimmon decoder; no chat
    # template, its processor puts the image rows (each row of patches ended by a |NEWLINE| token, which is text
    # and stays unmasked, as in the paper) and <s> before the prompt, and the answer token <0x04> after it. The
    # paper reads Fuyu's letters at the second generated token, not the first; that is not followed here.
    "fuyu": Adapter("fuyu", image_token_attr="image_token_id", final_norm_attr="final_layernorm",
                    load_processor=load_fuyu_processor, plain_prompt="{text}", processor_suffix_tokens=1,
                    vision_module="model.vision_embed_tokens", projector_module="model.vision_embed_tokens",
                    encode_image=_inner_image_features, processor_kwargs={"return_legacy_image_output": False},
                    features_attr="last_hidden_state"),
}

# Families transformers 5.25 knows that cannot be profiled yet, and why (adapter_for names the reason).
UNSUPPORTED: dict[str, str] = {
    "llama4": "its only image processor (Llama4ImageProcessor) requires torchvision, so no tiny model could be built "
              "and checked here (its image would enter as merged rows of a mixture-of-experts decoder)",
    "mistral3": "its processor (PixtralProcessor) requires torchvision, so no tiny model could be built and checked "
                "here (its image would enter as merged rows)",
    "phi4_multimodal": "its image is merged inside the decoder (Phi4MultimodalModel's embed_tokens_extend), so the "
                       "decoder-input hook never sees the image rows to mask; it loads as a causal LM, not an "
                       "image-text-to-text model, and its image processor requires torchvision",
    # Not a transformers family, named so that a sweep file may declare it (the paper's Cambrian-1).
    "cambrian_llama": "Cambrian-1 is not a transformers model: its config class and modelling code (several vision "
                      "towers joined by its spatial vision aggregator) live only in its own repository "
                      "(github.com/cambrian-mllm/cambrian), so transformers can load neither its config nor its "
                      "weights",
}




class Conversion(NamedTuple):
    """How a remote-code model type becomes a native family: the family, and the converter writing its folder
    (source folder, target folder)."""

    family: str
    convert: Callable[[Path, Path], Path]


# Remote-code model types pidcore converts, once, into a folder of a native family (pidcore.models.conversion): the
# paper's InternVL2.5 (InternVLChatModel) becomes `internvl`, whose tiles, pixel shuffle and projector it shares.
CONVERTED: dict[str, Conversion] = {"internvl_chat": Conversion("internvl", convert_internvl_chat)}


def adapter_for(model_type: str) -> Adapter:
    """The adapter of a family (of the family a converted type becomes), or an error naming what is missing for an
    unsupported one."""
    model_type = CONVERTED[model_type].family if model_type in CONVERTED else model_type
    if model_type in UNSUPPORTED:
        raise ValueError(f"model type {model_type!r} is not supported: {UNSUPPORTED[model_type]}")
    if model_type not in ADAPTERS:
        raise ValueError(f"model type {model_type!r} has no adapter: add an entry to pidcore.models.adapters.ADAPTERS "
                         f"saying which config field holds the image token id and where the decoder's final norm "
                         f"is; supported: {sorted(ADAPTERS)}")
    return ADAPTERS[model_type]


def image_token_id(config, adapter: Adapter) -> int:
    """The id of the image placeholder token, read from the config field the adapter names."""
    value = getattr(config, adapter.image_token_attr, None)
    if value is None:
        raise ValueError(f"{adapter.family} config has no {adapter.image_token_attr!r}; cannot locate image tokens")
    return int(value)
