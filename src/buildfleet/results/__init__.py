"""The output tree, summaries and reports: everything read from or written to results."""
