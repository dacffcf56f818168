"""InternLM2's tokenizer (remote code: InternLM2Tokenizer, a sentencepiece BPE model in tokenizer.model) rebuilt as a
fast tokenizer that gives the same ids, from the model file's pieces and its tokenizer_config.json, running none of its
code. Used when an InternVL2.5 checkpoint is converted (pidcore.models.internvl_chat)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import import_protobuf

from pidcore.models.listing import first_few

# InternLM2Tokenizer's special tokens where its tokenizer_config names none.
INTERNLM2_SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}
# sentencepiece's ModelProto enums: trainer_spec.model_type BPE, piece types NORMAL and USER_DEFINED.
SENTENCEPIECE_BPE = 2
SENTENCEPIECE_NORMAL = 1
SENTENCEPIECE_USER_DEFINED = 4


class UnsupportedTokenizer(ValueError):
    """A tokenizer the rebuild cannot reproduce exactly: the error says which of its settings."""


def internlm2_fast_tokenizer(source: Path, named: dict[str, str]) -> PreTrainedTokenizerFast:
    """InternLM2Tokenizer (remote code: sentencepiece BPE over tokenizer.model, <s> first, its added tokens split out
    before each remaining piece of text is encoded) as a fast tokenizer giving the same ids, built from the model
    file's pieces without running that code."""
    proto = _sentencepiece_proto(source / "tokenizer.model")
    settings = json.loads((source / "tokenizer_config.json").read_text())
    pieces = [(piece.piece, piece.type) for piece in proto.pieces]
    vocab = {piece: index for index, (piece, _) in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab, _sentencepiece_merges(proto, vocab), unk_token=proto.trainer_spec.unk_piece,
                                   fuse_unk=True, byte_fallback=True))
    # sentencepiece: a "▁" before each piece of text it encodes (add_dummy_prefix), spaces written as "▁"
    dummy_prefix = proto.normalizer_spec.add_dummy_prefix
    backend.normalizer = normalizers.Sequence([*([normalizers.Prepend("▁")] if dummy_prefix else []),
                                               normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         *([decoders.Strip(" ", 1, 0)] if dummy_prefix else [])])
    added = _added_tokens(settings, len(pieces))
    backend.add_tokens(_user_defined_tokens(proto, {token.content for token in added}))
    backend.add_special_tokens(added)
    special = {name: _content(settings.get(name) or default) for name, default in INTERNLM2_SPECIAL_TOKENS.items()}
    if settings.get("add_bos_token", True):
        bos = special["bos_token"]
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                               special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   extra_special_tokens=named, **special)


def _content(token: str | dict) -> str:
    """A special token's text, from a tokenizer_config that writes it as a string or as an AddedToken dict."""
    return token["content"] if isinstance(token, dict) else token


def _sentencepiece_proto(path: Path) -> object:
    """The parsed sentencepiece model file, refused where its text normalisation is one the rebuild does not do."""
    if not path.is_file():
        raise UnsupportedTokenizer(f"cannot convert the InternLM2 tokenizer: {path} is missing")
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(path.read_bytes())
    spec = proto.normalizer_spec
    if proto.trainer_spec.model_type != SENTENCEPIECE_BPE or spec.precompiled_charsmap or \
            spec.remove_extra_whitespaces:
        raise UnsupportedTokenizer(f"cannot convert the InternLM2 tokenizer {path}: only a BPE model without character "
                                   "normalisation and without removal of extra whitespace is rebuilt")
    return proto


def _sentencepiece_merges(proto: object, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """The BPE merges that reproduce sentencepiece's: every split of a normal piece into two pieces of the vocabulary,
    the pieces of higher score merged first (as transformers' SentencePieceExtractor orders them)."""
    ranked = sorted((piece for piece in proto.pieces if piece.type == SENTENCEPIECE_NORMAL),
                    key=lambda piece: -piece.score)
    merges = []
    for piece in ranked:
        text = piece.piece
        splits = [(text[:cut], text[cut:]) for cut in range(1, len(text))
                  if text[:cut] in vocab and text[cut:] in vocab]
        merges.extend(sorted(splits, key=lambda pair: (vocab[pair[0]], vocab[pair[1]])))
    return merges


def _user_defined_tokens(proto: object, added: set[str]) -> list[AddedToken]:
    """The pieces sentencepiece matches whole inside the text it encodes (user-defined ones) that the tokenizer does
    not split out itself. Matched on the normalised text, they are the same only without the dummy "▁" prefix
    (sentencepiece puts it before the piece at the start of a text, the rebuild would put it after)."""
    inner = [piece.piece for piece in proto.pieces
             if piece.type == SENTENCEPIECE_USER_DEFINED and piece.piece not in added]
    if inner and proto.normalizer_spec.add_dummy_prefix:
        raise UnsupportedTokenizer(f"cannot convert the InternLM2 tokenizer: its user-defined pieces "
                                   f"{first_few(inner)} are not added tokens and its sentencepiece model adds a dummy "
                                   "prefix")
    return [AddedToken(piece, normalized=True, special=False) for piece in inner]


def _added_tokens(settings: dict, model_size: int) -> list[AddedToken]:
    """The tokens the slow tokenizer splits out before encoding (its tokenizer_config's added_tokens_decoder), in id
    order; those past the sentencepiece model must follow it without gaps to keep their ids."""
    decoder = {int(index): token for index, token in settings.get("added_tokens_decoder", {}).items()}
    beyond = sorted(index for index in decoder if index >= model_size)
    if beyond != list(range(model_size, model_size + len(beyond))):
        raise UnsupportedTokenizer(f"the InternLM2 tokenizer's added token ids {beyond} do not follow its {model_size} "
                                   "sentencepiece pieces without gaps")
    return [AddedToken(token["content"], single_word=token.get("single_word", False), lstrip=token.get("lstrip", False),
                       rstrip=token.get("rstrip", False), normalized=token.get("normalized", False), special=True)
            for _, token in sorted(decoder.items())]
