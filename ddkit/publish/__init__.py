"""What a reader sees: figures, the generated documents (README blocks, docs/results.md), the
notebook pipeline and ``ddkit analyze``'s report. Imports the wings below it; the faces
(``ddkit.cli``, ``ddkit.nb``) sit on top.
"""
