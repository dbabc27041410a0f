"""Experiments: the paper's tables at lite scale (`reproduce`, written up by `report`),
and the speed benchmarks of encoding (`bench`) and of a training step (`train_bench`).
Layer: imports every layer below it, never plume_lite.apps."""
