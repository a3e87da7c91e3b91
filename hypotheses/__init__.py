"""Worked hypotheses shipped with scrub: small trained models with known circuits."""
