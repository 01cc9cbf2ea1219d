"""The built-in example: the read simulator and the demo cohort."""
