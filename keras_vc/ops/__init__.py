"""Backend-agnostic math shared by the layers, losses and tools (one home per formula)."""
