"""The output stage: atomic writes, scan directories, VCF/BED, HTML reports, MultiQC files."""
