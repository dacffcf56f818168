"""Processors that work without torchvision: Qwen2-VL's stock processor insists on a video processor."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor for images only (its video processor needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def load_qwen2_vl_processor(model_id: str, trust_remote_code: bool = False) -> ImageOnlyQwen2VLProcessor:
    """Tokenizer, PIL image processor and chat template of a Qwen2-VL checkpoint, without a video processor."""
    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_id)
    template = tokenizer.chat_template
    local = Path(model_id) / "chat_template.jinja"
    if template is None and local.is_file():
        template = local.read_text()
    if template is None:
        raise ValueError(f"{model_id} has no chat template in its tokenizer or chat_template.jinja")
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
