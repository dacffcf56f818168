"""Processors that work without torchvision: the stock Qwen-VL processors insist on a video processor."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from transformers import AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file


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
