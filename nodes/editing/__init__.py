"""Editing nodes: FlowEdit, RF-Edit and RF-Inversion, which change a real image by changing its description."""
