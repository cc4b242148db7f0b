"""The kit's foundations: run configs and profiles, data sets (Fashion-MNIST and its mosaics), timm
model presets, block hooks, the paper's losses, MAE pre-training, committed table names.
Imports nothing else of ddkit.
"""
