"""Clocks, memory samplers and the pure math over what they record."""
