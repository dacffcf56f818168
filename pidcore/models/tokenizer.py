"""A small byte-level BPE tokenizer trained locally, so tiny models need no download."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
CORPUS = [
    "USER: ASSISTANT: Answer with the option's letter from the given choices directly.",
    "What colour is the shape? What shape is shown? Is there a circle in the image? Which side is the square on?",
    "A. red B. green C. blue D. yellow E. circle F. square yes no left right top bottom",
    "Options: A B C D E F Hint: Question: Answer: The answer is",
    "Is the shape red? Is the shape green? Is the shape blue? Is the shape yellow? The shape is yellow.",
    "What colour is a tomato? What colour is grass? What colour is the sky? What colour is a banana?",
    "Which colour does the shape have? Name the colour of the shape. Tell me the colour of the shape.",
    "A tomato is red. Grass is green. The sky is blue. A banana is yellow.",
]


def train_tokenizer(extra_special: list[str] | None = None, image_token: str = "<image>", vocab_size: int = 400,
                    named: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on a fixed prompt corpus; deterministic. `image_token` is the family's placeholder;
    `named` gives further special tokens the family's processor reads by attribute (e.g. {"boi_token": ...})."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    named = {"image_token": image_token, **(named or {})}
    wanted = [*(extra_special or []), *named.values()]
    specials = SPECIAL_TOKENS + [token for token in dict.fromkeys(wanted) if token not in SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens=named)
