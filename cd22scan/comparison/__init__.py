"""The comparison stage: baseline vs relapse effects, tests and verdicts."""
