"""How the three probes are run: the paper's stage-1/2 conventions, one switch each, and the two named sets.

`published` follows the paper's own scripts (RiiShin/pid-lvlm-analysis, commit 950ddb7) wherever the model's
family has one; `clean` is ours. The switches, with the paper's lines (`embeds/qwen2_small_embed.py` unless named):
- positions: the masked passes get plain 1-D positions 0..T-1, image tokens included (they call `generate` with
  `inputs_embeds` only, lines 461, 477); ours keep the model's own positions (Qwen's M-RoPE) in every row;
- span: the whole human turn is masked, answer instruction included, and x2 averages it (lines 384-432); ours mask
  the question and options only;
- statistics: the noise statistics come from the whole training split, the text embedded on its own, population
  std (`devis/qwen2_small_devi.py` 166-208); ours from the first calibration samples' merged embeddings, sample std;
- images: the family's own image preparation in the paper's script (qwen_vl_utils' resize, processor bounds of
  256-1280 image tokens, lines 81-84, 327; Llama 3.2 Vision's: the image as decoded, which its processor composites
  on white where it has an alpha channel, `embeds/llama_11b_embed.py` 285, 312); ours give the image to the
  checkpoint's processor as it is (alpha dropped);
- scores: the letters are read after the checkpoint's generation-config logits processors (`generate(...).scores`,
  e.g. a repetition penalty, which touches the full pass only); ours read the raw logits;
- draws: one stream seeded like `torch.manual_seed(42)` per split, drawing per sample in dataset order the image
  noise then the text noise in the model's dtype (line 23, 415, 429); ours draw from a seed per sample.
- instruction: where the family's image features read the prompt (InstructBLIP's Q-Former), the image-only probe's
  image tokens are built from the question as in the full pass, so they carry it (`embeds/inblip_embed.py` 402-408,
  499); ours give the vision path an empty instruction in that row, so the image-only probe is complete.
- qformer_positions: where the family's image features come through a Q-Former that reads the prompt (InstructBLIP),
  its position table is stretched from 512 to 1024 rows by linear interpolation, which moves every prompt position
  (`embeds/inblip_embed.py` 90-119; pidcore.probes.qformer_positions); ours keep the checkpoint's table.
- scalar_std: with `statistics`, each modality's noise has one std, the population std of every value of its rows
  with all dimensions together, the same in every dimension (`devis/llama_11b_devi.py` 196-197,
  `flatten().std(unbiased=False)`); that stage 1 computes no mean, so the mean stays the per-dimension one of the
  same rows; ours (and the Qwen stage 1's) are one std per dimension.
- context_text: with `statistics`, the text statistics come from the masked span's embeddings as the full prompt
  tokenises it (`devis/llama_11b_devi.py` 151-158: the tokens between <|image|> and <|eot_id|>); the Qwen stage 1
  tokenises the turn on its own (pidcore.probes.statistics.PaperStatistics).
- dropped_states: where the image enters through cross-attention layers (Llama 3.2 Vision), the masked passes run
  without them: the script hands the states to `generate` as `cross_attention_states` (`embeds/llama_11b_embed.py`
  388-400, 426, 443), which transformers 4.51.3's Mllama `prepare_inputs_for_generation` does not pass on, so the
  forward skips those layers; its image-only probe then sees neither the image nor the text, and its text-only probe
  the text with no image at all (the image noise is drawn, never used); ours keep the layers, with the image or its
  noise (pidcore.probes.paper_forward).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

CONVENTIONS = ("positions", "span", "statistics", "images", "scores", "draws", "instruction", "qformer_positions",
               "scalar_std", "context_text", "dropped_states")
# The conventions of the paper's Qwen scripts that do not depend on the model class, which `published` applies to a
# family without a script of its own. Its other scripts follow them with variations: its Llama stage 1 takes the text
# statistics from the in-context span (`context_text`), and its Llama, Fuyu and 78B InternVL stage-1 scripts one std
# over all dimensions (`scalar_std`).
SHARED_CONVENTIONS = frozenset({"span", "statistics", "draws"})
# Those of the paper's Qwen-VL scripts: all but `instruction` and `qformer_positions`, since no prompt reaches their
# image features, and the Llama scripts' variations.
QWEN_SCRIPT_CONVENTIONS = frozenset(CONVENTIONS) - {"instruction", "qformer_positions", "scalar_std", "context_text",
                                                    "dropped_states"}
# Those of the paper's Llama 3.2 Vision scripts (devis/llama_11b_devi.py, embeds/llama_11b_embed.py).
LLAMA_SCRIPT_CONVENTIONS = SHARED_CONVENTIONS | {"images", "scalar_std", "context_text", "dropped_states"}
PUBLISHED, CLEAN = "published", "clean"
PROBE_MODES = (PUBLISHED, CLEAN)
# The paper seeds its noise stream with torch.manual_seed(42); a run's seed is added to it.
PAPER_NOISE_SEED = 42


@dataclass(frozen=True)
class ProbeConventions:
    """Which of the paper's stage-1/2 conventions a run applies (see the module docstring for each)."""

    positions: bool = False
    span: bool = False
    statistics: bool = False
    images: bool = False
    scores: bool = False
    draws: bool = False
    instruction: bool = False
    qformer_positions: bool = False
    scalar_std: bool = False
    context_text: bool = False
    dropped_states: bool = False

    @classmethod
    def of(cls, names: frozenset[str] | set[str]) -> ProbeConventions:
        """The conventions named, the others off; an unknown name is an error listing the known ones."""
        unknown = sorted(set(names) - set(CONVENTIONS))
        if unknown:
            raise ValueError(f"unknown probe convention(s) {unknown}; known: {', '.join(CONVENTIONS)}")
        return cls(**{name: name in names for name in CONVENTIONS})

    @property
    def applied(self) -> list[str]:
        """The names of the conventions switched on, in CONVENTIONS order."""
        return [item.name for item in fields(self) if getattr(self, item.name)]


CLEAN_CONVENTIONS = ProbeConventions()


# `published` with one convention left out, e.g. "published-minus-positions": what each one changes, measured.
MINUS = "-minus-"


def parse_mode(mode: str) -> tuple[str, str]:
    """A mode's base (published or clean) and the convention it leaves out ("" for none); an error for anything
    else, so a bad mode fails before a model loads."""
    base, _, left_out = mode.partition(MINUS)
    if base not in PROBE_MODES or (left_out and (base != PUBLISHED or left_out not in CONVENTIONS)):
        raise ValueError(f"unknown probe conventions {mode!r}; use {' or '.join(PROBE_MODES)} (or "
                         f"{PUBLISHED}{MINUS}NAME, NAME one of {', '.join(CONVENTIONS)})")
    return base, left_out


def conventions_for(mode: str, family_conventions: frozenset[str]) -> ProbeConventions:
    """The conventions of a named mode for a family: `published` applies those its paper script follows
    (`family_conventions`, the adapter's), `clean` none, and `published-minus-NAME` all of published's but NAME."""
    base, left_out = parse_mode(mode)
    if base == CLEAN:
        return CLEAN_CONVENTIONS
    return ProbeConventions.of(set(family_conventions) - {left_out})
