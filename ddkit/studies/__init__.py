"""The studies a profile describes, each computed once: the teachers and the ablation, the grid of
settings, the sweep and regime search, U formation, the controls, the remedies and the phase
map. Imports the wings below it.
"""
