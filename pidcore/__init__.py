"""Information Spectrum Explorer: the partial information decomposition of what a vision-language model's image and
question tell it about its answer, in bits (DESIGN.md)."""

__version__ = "0.1.0"
