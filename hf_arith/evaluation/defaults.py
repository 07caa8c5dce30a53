"""What an evaluation uses when it is not told: the one place these numbers are written.

Imports nothing heavy, so that the CLI's help can state them without loading torch.

Example:
    >>> DEFAULT_LENGTHS, DEFAULT_SAMPLES, DEFAULT_EVAL_SEED, IN_LOOP_GRID_LENGTHS, IN_LOOP_GRID_SAMPLES
    ('1-40', 100, 1234, '1-20', 10)
"""

# `hf-arith eval` and `hf-arith data eval-set`: every cell of 1..40 x 1..40 digits (twice the
# paper's training lengths), 100 problems per cell as in the paper.
DEFAULT_LENGTHS = "1-40"
DEFAULT_SAMPLES = 100

# Evaluation problems come from `hf_arith.data.arithmetic.eval_set`, which seeds every cell from
# ("eval", task, seed, cell) while training draws from ("train", task, seed, ...): the two never
# share a random stream, whatever integers the seeds are. `hf-arith eval`, `hf-arith data
# eval-set` and the in-loop evaluators all draw with this seed unless told otherwise.
DEFAULT_EVAL_SEED = 1234
# The in-loop `arith_grid` evaluator's grid (`hf_arith.training.evaluators.arith_grid`): the
# training lengths of the paper's addition, a few problems per cell, so that it stays cheap.
IN_LOOP_GRID_LENGTHS = "1-20"
IN_LOOP_GRID_SAMPLES = 10

__all__ = ["DEFAULT_EVAL_SEED", "DEFAULT_LENGTHS", "DEFAULT_SAMPLES", "IN_LOOP_GRID_LENGTHS", "IN_LOOP_GRID_SAMPLES"]
