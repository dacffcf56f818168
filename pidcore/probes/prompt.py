"""Multiple-choice prompts through the model's own chat template."""

from __future__ import annotations

from pidcore.atoms import option_letters

INSTRUCTION = "Answer with the option's letter from the given choices directly."


def user_text(question: str, options: list[str], hint: str | None = None) -> str:
    """The part of the prompt that is the sample's own text: hint, question and lettered options."""
    lines = [f"Hint: {hint}"] if hint else []
    lines.append(question.strip())
    lines += [f"{letter}. {option.strip()}" for letter, option in zip(option_letters(len(options)), options)]
    return "\n".join(lines)


def human_turn(text: str) -> str:
    """The user's whole turn as text: the sample's own text followed by the answer instruction."""
    return f"{text}\n{INSTRUCTION}"


def render_prompt(processor, text: str, plain_prompt: str | None = None) -> str:
    """The full prompt string: image, the user text, the answer instruction, the generation prompt."""
    return render_turn(processor, human_turn(text), plain_prompt)


def render_turn(processor, turn: str, plain_prompt: str | None = None) -> str:
    """The full prompt string for a user turn of an image and the text `turn`, with the generation prompt.

    Families without a chat template give `plain_prompt`, a format string over {image} and {text}.
    """
    if plain_prompt is not None:
        return plain_prompt.format(image=processor.image_token, text=turn)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": turn}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
