"""Processors that work without torchvision: the stock Qwen-VL processors insist on a video processor, others can be
built and loaded without theirs (without_video_processor), and Fuyu's PIL image processor cannot patchify the torch
tensors its processor hands it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    FuyuImageProcessorPil,
    FuyuProcessor,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)
from transformers.image_utils import SizeDict
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file


@dataclass(frozen=True)
class _NoVideoProcessor:
    """Stands in for the missing video processor where a processor reads its defaults (SmolVLM's chat template
    rendering reads num_frames and fps): none."""

    num_frames: int | None = None
    fps: float | None = None


def without_video_processor(processor_class: type) -> type:
    """`processor_class` without its video processor (which needs torchvision): a subclass of the same name, so a
    saved processor config still names the real class. Pass it video_processor=None where the class requires one."""
    attributes = [name for name in processor_class.get_attributes() if name != "video_processor"]
    return type(processor_class.__name__, (processor_class,),
                {"get_attributes": classmethod(lambda cls: attributes), "video_processor": _NoVideoProcessor(),
                 "__module__": processor_class.__module__})


def loader_without_video(processor_class: type) -> Callable[[str, bool, str | None], object]:
    """A load_processor that loads `processor_class` from a checkpoint without its video processor."""
    def load(model_id: str, trust_remote_code: bool, revision: str | None) -> object:
        return without_video_processor(processor_class).from_pretrained(
            model_id, trust_remote_code=trust_remote_code, revision=revision, video_processor=None)

    return load


class _ImageOnly:
    """Set the image and video token attributes the Qwen-VL processors read, then skip their video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2VLProcessor(_ImageOnly, Qwen2VLProcessor):
    """Qwen2-VL's processor for images only (its video processor needs torchvision)."""


class ImageOnlyQwen2_5_VLProcessor(_ImageOnly, Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor for images only (its video processor needs torchvision)."""


def load_image_only_processor(processor_class: type, model_id: str, trust_remote_code: bool = False,
                              revision: str | None = None) -> ProcessorMixin:
    """Tokenizer, PIL image processor and chat template of a Qwen-VL checkpoint, without a video processor."""
    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_id, revision=revision)
    template = tokenizer.chat_template or _saved_chat_template(model_id, revision)
    if template is None:
        raise ValueError(f"{model_id} has no chat template in its tokenizer, chat_template.jinja or chat_template.json")
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _saved_chat_template(model_id: str, revision: str | None = None) -> str | None:
    """The chat template a checkpoint keeps beside its tokenizer (.jinja in newer saves, .json in older ones)."""
    jinja = cached_file(model_id, "chat_template.jinja", revision=revision,
                        _raise_exceptions_for_missing_entries=False)
    if jinja is not None:
        return Path(jinja).read_text()
    saved = cached_file(model_id, "chat_template.json", revision=revision,
                        _raise_exceptions_for_missing_entries=False)
    return json.loads(Path(saved).read_text()).get("chat_template") if saved is not None else None


load_qwen2_vl_processor = partial(load_image_only_processor, ImageOnlyQwen2VLProcessor)
load_qwen2_5_vl_processor = partial(load_image_only_processor, ImageOnlyQwen2_5_VLProcessor)


class _TensorPatchesFuyuImageProcessor(FuyuImageProcessorPil):
    """Fuyu's PIL image processor, its patchify_image taking the torch tensors FuyuProcessor hands it (transformers
    5.25's transposes them numpy-style and fails)."""

    def patchify_image(self, image: torch.Tensor, patch_size: SizeDict | None = None) -> torch.Tensor:
        """The image's patches [..., patches, channels x patch height x patch width], as Fuyu's own (torchvision)
        image processor returns them: the numpy patchify on the tensor's values."""
        patches = super().patchify_image(image.numpy(), patch_size)
        return torch.from_numpy(patches).reshape(*image.shape[:-3], -1, patches.shape[-1])


# Saved under transformers' class name, so that a processor saved from it loads without pidcore.
_TensorPatchesFuyuImageProcessor.__name__ = FuyuImageProcessorPil.__name__


def load_fuyu_processor(model_id: str, trust_remote_code: bool = False, revision: str | None = None) -> FuyuProcessor:
    """Fuyu's processor of a checkpoint, its image processor one that patchifies its own tensors."""
    images = _TensorPatchesFuyuImageProcessor.from_pretrained(model_id, revision=revision)
    return FuyuProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision,
                                         image_processor=images)
