"""Interpretability engines: pure library code that works on any ``torch.nn.Module`` (no web code)."""
