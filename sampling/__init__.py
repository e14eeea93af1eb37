"""Sampling maths for rectified-flow models: sigma tables, schedules, samplers, guidance, noise.

Everything here is pure tensor arithmetic on the FLUX convention (sigma = t in [0, 1], noise at
1, data at 0). The package performs no I/O and imports nothing from engine/, modeling/ or nodes/,
so the same code serves the nodes, the training scripts and the analytic tests.
"""
