"""The cohort stage: sample sheet, scans and comparisons of many samples, Snakemake workflow."""
