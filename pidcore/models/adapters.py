"""The one table of model-family differences, keyed by the config's model_type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pidcore.models.paper_images import PAPER_QWEN_PIXEL_BOUNDS, qwen_utils_image
from pidcore.models.processors import load_qwen2_5_vl_processor, load_qwen2_vl_processor
from pidcore.probes.conventions import CONVENTIONS, SHARED_CONVENTIONS


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


def _paper_qwen(script: str) -> dict:
    """The adapter fields of a Qwen-VL family whose stage-2 script the paper published."""
    return {"paper_script": f"models_scripts/general_models/embeds/{script}",
            "paper_conventions": frozenset(CONVENTIONS),
            "paper_image": qwen_utils_image, "paper_pixel_bounds": PAPER_QWEN_PIXEL_BOUNDS, "rope_positions": True}


ADAPTERS: dict[str, Adapter] = {
    "llava": Adapter("llava", image_token_attr="image_token_index"),
    "idefics3": Adapter("idefics3", image_token_attr="image_token_id", vision_module="model.vision_model",
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
}


def adapter_for(model_type: str) -> Adapter:
    """The adapter of a family, or an error naming what is missing for an unsupported one."""
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
