"""Loader nodes: checkpoints, diffusion models, VAEs and text encoders from the models/ folders."""
