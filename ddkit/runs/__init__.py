"""Training and the run store: one resumable training loop, the run folders and their cache, the
frozen-teacher cache, progress events, the local worker pool and Slurm through submitit.
Imports ``ddkit.core`` (and ``ddkit.signals``).
"""
