"""The calling stage: per-sample calls (expression, splicing, variants + HGVS), statistics."""
