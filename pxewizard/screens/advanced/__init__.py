"""The Advanced settings step (off the flow, opened from Review)."""
