"""Names from a results database (model, task, family, checkpoint, stage) and messages that quote them, shown as
the text they are: never as Markdown (a planted link) in Streamlit, never as HTML tags in Plotly."""

from __future__ import annotations

import html
import re

# CommonMark lets a backslash escape every ASCII punctuation mark, which then shows as itself; Streamlit's own
# Markdown extensions (:colour[...], :material/icon:, $math$) all start with one.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub's autolinks (https://host.tld, www.host.tld, name@host.tld) are found in the text once its escapes are
# resolved, so an invisible word joiner breaks each up: after "://" and "@", and between "www" and its dot.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=://)|(?<=@)|(?<=www)(?=\.)", re.IGNORECASE)


def markdown_text(value: object) -> str:
    """`value` for a Streamlit string rendered as Markdown (st.markdown, st.info, captions, widget labels): every
    punctuation mark escaped, no autolink, line breaks made spaces, so it shows literally inside the text around."""
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, " ".join(str(value).split())))


def plotly_text(value: object) -> str:
    """`value` for a Plotly label (axis categories, legend names, point text, titles): its tags and entities shown
    literally instead of as Plotly's HTML subset (links, bold, line breaks)."""
    return html.escape(str(value), quote=False)
