"""Train a tiny VLM from scratch on the shapes benchmark: vision and language pretraining, then the two stages.

- vision pretraining: encoder and projector classify the shape's colour and kind from mean-pooled image
  features; the projector is then re-initialised, so stage 1 starts from a fresh one, as in LLaVA;
- language pretraining: the language model alone on plain sentences (facts, captions, questions);
- stage 1, projector alignment: only the projector trains, on captions of images;
- stage 2, instruction tuning: projector and language model train on the multiple-choice tasks, the loss on
  the answer letter only (the vision encoder stays frozen).

Parts are found through the adapter table's module paths and get_decoder() / get_output_embeddings().
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch

from pidcore.atoms import LETTERS
from pidcore.datasets import shapes
from pidcore.models.loading import LoadedVLM
from pidcore.probes.encoding import Encoded, encode_sample
from pidcore.probes.engine import decoder_input_hook
from pidcore.probes.prompt import render_prompt, user_text

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
FACTS = [f"{name[0].upper()}{name[1:]} is {colour}." for name, colour in shapes.OBJECTS.items()]
DESCRIBE = "Describe the shape."


def parameters(vlm: LoadedVLM, part: str) -> list[torch.nn.Parameter]:
    """The parameters of one part: "vision" (encoder without projector), "projector" or "language"."""
    model = vlm.model
    projector = list(model.get_submodule(vlm.adapter.projector_module).parameters())
    if part == "projector":
        return projector
    if part == "vision":
        inside = {id(p) for p in projector}
        return [p for p in model.get_submodule(vlm.adapter.vision_module).parameters() if id(p) not in inside]
    if part == "language":
        seen: dict[int, torch.nn.Parameter] = {}
        for module in (model.get_decoder(), model.get_output_embeddings()):
            seen.update((id(p), p) for p in module.parameters())
        return list(seen.values())
    raise ValueError(f"unknown part {part!r}")


def train(vlm: LoadedVLM, trainable: list[torch.nn.Parameter], batches: Iterator[Callable[[], torch.Tensor]],
          steps: int, learning_rate: float, on_step: Callable[[int], None] | None = None) -> float:
    """AdamW on `trainable` only (the model's other parameters frozen) for `steps` batches; returns the last loss."""
    for parameter in vlm.model.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _warmup_then_decay(step, steps))
    vlm.model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        loss = next(batches)()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step + 1)
    vlm.model.eval()
    return loss.item()


def _warmup_then_decay(step: int, steps: int, warmup: int = 20, floor: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then linear decay to `floor` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    return max(floor, 1 - (1 - floor) * (step - warmup) / max(1, steps - warmup))


def reinitialise(module: torch.nn.Module, seed: int) -> None:
    """Fresh random weights for every layer of `module` that can reset itself."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for child in module.modules():
            if hasattr(child, "reset_parameters"):
                child.reset_parameters()


def vision_head(vlm: LoadedVLM) -> torch.nn.Linear:
    """A linear read-out of colour and shape kind from pooled image features, used only in vision pretraining."""
    return torch.nn.Linear(vlm.model.config.get_text_config().hidden_size, len(shapes.COLOURS) + len(shapes.SHAPES))


def vision_batches(vlm: LoadedVLM, head: torch.nn.Linear, rng: random.Random,
                   size: int) -> Iterator[Callable[[], torch.Tensor]]:
    """Colour and shape classification from mean-pooled image features, through `head` (trained alongside)."""
    while True:
        colours = [rng.randrange(len(shapes.COLOURS)) for _ in range(size)]
        kinds = [rng.randrange(len(shapes.SHAPES)) for _ in range(size)]
        images = [shapes.render(c, random.Random(rng.random()), kind=shapes.SHAPES[k]) for c, k in zip(colours, kinds)]

        def loss(images=images, colours=colours, kinds=kinds):
            logits = head(_pooled_image_features(vlm, images))
            colour_loss = torch.nn.functional.cross_entropy(logits[:, : len(shapes.COLOURS)], torch.tensor(colours))
            kind_loss = torch.nn.functional.cross_entropy(logits[:, len(shapes.COLOURS):], torch.tensor(kinds))
            return colour_loss + kind_loss

        yield loss


def _pooled_image_features(vlm: LoadedVLM, images: list) -> torch.Tensor:
    """[images, d]: the mean of each image's projected features (the tokens the language model would see)."""
    prompt = render_prompt(vlm.processor, DESCRIBE, vlm.adapter.plain_prompt)
    inputs = _processed(vlm.processor, images, [prompt] * len(images))
    output = vlm.model.get_image_features(**{k: v for k, v in inputs.items() if k not in TEXT_INPUTS})
    features = getattr(output, "pooler_output", output)
    if isinstance(features, (list, tuple)):
        return torch.stack([f.reshape(-1, f.shape[-1]).mean(0) for f in features])
    return features.reshape(len(images), -1, features.shape[-1]).mean(1)


def language_batches(vlm: LoadedVLM, rng: random.Random, size: int) -> Iterator[Callable[[], torch.Tensor]]:
    """Next-token prediction on plain sentences: the colour facts, captions and the benchmark's questions."""
    tokenizer = vlm.processor.tokenizer
    while True:
        texts = []
        for _ in range(size):
            kind = rng.random()
            if kind < 0.4:
                texts.append(rng.choice(FACTS))
            elif kind < 0.7:
                texts.append(shapes.caption(rng.randrange(len(shapes.COLOURS))))
            else:
                texts.append(shapes.draw_item(rng.choice(shapes.TASKS), rng).question)
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
        labels = encoded.input_ids.masked_fill(encoded.attention_mask == 0, -100)

        def loss(encoded=encoded, labels=labels):
            return vlm.model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, labels=labels).loss

        yield loss


def caption_batches(vlm: LoadedVLM, rng: random.Random, size: int) -> Iterator[Callable[[], torch.Tensor]]:
    """Image -> caption, the loss on the caption's tokens only (projector alignment)."""
    prompt = render_prompt(vlm.processor, DESCRIBE, vlm.adapter.plain_prompt)
    while True:
        colours = [rng.randrange(len(shapes.COLOURS)) for _ in range(size)]
        images = [shapes.render(c, random.Random(rng.random())) for c in colours]
        yield _answer_loss(vlm, images, [prompt] * size, [shapes.caption(c) for c in colours])


def instruction_batches(vlm: LoadedVLM, rng: random.Random, size: int, weights: dict[str, float],
                        modality_dropout: float = 0.0) -> Iterator[Callable[[], torch.Tensor]]:
    """The multiple-choice tasks in the probing prompt format, the loss on the answer letter only.

    With modality_dropout > 0, that fraction of rows has its user text (half of them) or its image (the other
    half) replaced by Gaussian noise, exactly as the masked probes do, with the answer kept as the target.
    """
    tasks, task_weights = list(weights), list(weights.values())
    masks: dict[tuple, Encoded] = {}
    while True:
        images, prompts, answers, dropped = [], [], [], []
        for _ in range(size):
            task = rng.choices(tasks, task_weights)[0]
            item = shapes.draw_item(task, rng)
            images.append(shapes.render(item.x1, random.Random(rng.random())))
            text = user_text(item.question, item.options)
            prompts.append(render_prompt(vlm.processor, text, vlm.adapter.plain_prompt))
            answers.append(LETTERS[item.answer])
            key = (item.question, tuple(item.options))
            if key not in masks:
                masks[key] = encode_sample(vlm, images[-1], item.question, item.options)
            draw = rng.random()
            mode = "" if draw >= modality_dropout else ("text" if draw < modality_dropout / 2 else "image")
            dropped.append((mode, masks[key]))
        yield _answer_loss(vlm, images, prompts, answers, dropped)


def _answer_loss(vlm: LoadedVLM, images: list, prompts: list[str], answers: list[str],
                 dropped: list[tuple[str, Encoded]] | None = None) -> Callable[[], torch.Tensor]:
    """A deferred loss on the tokens of `answers`, each appended to its prompt; prompts and padding are masked.

    The answer's tokens are the last tokens of its row (before any the processor appends), so their count is
    the length of the answer tokenised alone; the prompts end where a new word starts, so nothing merges.
    """
    full = _processed(vlm.processor, images, [p + a for p, a in zip(prompts, answers)])
    suffix = vlm.adapter.processor_suffix_tokens
    labels = torch.full_like(full["input_ids"], -100)
    for row, answer in enumerate(answers):
        end = int(full["attention_mask"][row].sum()) - suffix
        start = end - len(vlm.processor.tokenizer.encode(answer, add_special_tokens=False))
        labels[row, start:end] = full["input_ids"][row, start:end]

    def loss() -> torch.Tensor:
        if not dropped or not any(mode for mode, _ in dropped):
            return vlm.model(**full, labels=labels).loss
        with decoder_input_hook(vlm, lambda embeds: _with_noise(embeds, dropped)):
            return vlm.model(**full, labels=labels).loss

    return loss


def _with_noise(embeds: torch.Tensor, dropped: list[tuple[str, Encoded]]) -> torch.Tensor:
    """Replace the dropped rows' text or image embeddings by noise with the batch's per-dimension mean and std."""
    length = embeds.shape[1]
    text = torch.stack([_padded(encoded.text_mask, length) for _, encoded in dropped])
    image = torch.stack([_padded(encoded.image_mask, length) for _, encoded in dropped])
    embeds = embeds.clone()
    for mode, mask in (("text", text), ("image", image)):
        values = embeds.detach()[mask]
        rows = torch.tensor([m == mode for m, _ in dropped])[:, None] & mask
        noise = values.mean(0) + values.std(0) * torch.randn(int(rows.sum()), embeds.shape[-1])
        embeds[rows] = noise.to(embeds.dtype)
    return embeds


def _padded(mask: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([mask, mask.new_zeros(length - len(mask))])


def _processed(processor, images: list, texts: list[str]) -> dict:
    inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
    return {name: value for name, value in inputs.items() if name != "labels"}
