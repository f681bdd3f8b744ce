"""Back end: an optimized IR -> a NumPy module (schedule, buffers, code, format)."""
