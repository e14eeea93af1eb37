"""Latent nodes: empty latents, VAE encode/decode and latent resizing."""
