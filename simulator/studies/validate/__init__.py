"""Validation against published measurements: the cases file (cases.py), each row as a scenario and its
measured quantity (predict.py), the speed-of-light bound of each row (bounds.py), and the table, report and
plot (report.py)."""
