"""LLM labeling, the completion cache, augmentation and Argilla review (later issues)."""
