"""Studies: grids of methods x hour budgets x corpora x seeds, resumable cell by cell."""
