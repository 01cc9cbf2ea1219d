"""The sample stage: pysam reader, the counting core's scan, per-sample count tables."""
