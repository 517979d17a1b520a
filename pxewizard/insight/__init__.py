"""What the events mean: per-client timelines, diagnosis rules, events in words, the session."""
