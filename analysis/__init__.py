"""mergesec analysis: statistics over stored results (tidy DataFrames) and the findings report."""
