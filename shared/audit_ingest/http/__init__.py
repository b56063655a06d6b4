"""The HTTP edge: turning requests into envelopes and outcomes into responses."""
