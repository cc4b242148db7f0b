"""The per-layer signals and what is computed from them: the metrics (channel spectrum, token
entropy, magnitudes, capacity), the C entropy kernel, the dynamics tables, the image bootstrap
and the encoding mismatch. Imports only ``ddkit.core``.
"""
