"""Precision passes over artifacts (fp16 with measured fp32 islands, int8 QDQ, GGUF quant types).

Nothing is implemented here yet: `embcc export --precision` accepts fp32 only and says so for anything else.
"""
