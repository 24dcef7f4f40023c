"""steerlab: activation steering for language models, on TransformerLens or nnsight."""
