"""What one run records and writes (stages 6-7): the records the engine appends to, the tables and
summary.json built from them once, the report and plots, and the output folder written all or nothing."""
