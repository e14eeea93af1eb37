"""Sampling nodes: KSampler, the SamplerCustomAdvanced family and the flow-shift model patches."""
