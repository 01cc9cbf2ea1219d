"""The target stage: gene models (built-in data, GTF/GFF3), build and contig naming."""
