"""Studies made of many runs, on top of `run` (stage 8): sweeps, design comparisons, validation against
published measurements, the highest rate under an SLO; and `explain`, the plan of one run without simulating.
Each study is one module (or one small package) with its report beside it."""
