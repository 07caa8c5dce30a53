"""What the benchmarks count FLOPs against: this machine's measured matmul peak, and the training
matmul FLOPs of one step of a decoder (shared by `abacus_train.py` and `olmo_train_step.py`).

Example:
    >>> training_matmul_flops(hidden=256, intermediate=1024, layers=4, vocab=4096, batch=8, seq=256) / 1e9
    67.6...
"""

# The CI-class box's 2-thread matmul peak with torch 2.13 (AMD EPYC, avx512_bf16), in GFLOP/s.
PEAK_GFLOPS = {"fp32": 135.0, "bf16": 370.0}


def training_matmul_flops(hidden: int, intermediate: int, layers: int, vocab: int, batch: int, seq: int) -> float:
    """Forward + backward matmul FLOPs of one step on `batch` sequences of `seq` tokens: 6 x matmul
    parameters x tokens for the projections (fused QKV + output, gate/up + down) and the LM head,
    and 6 x d x T^2 per layer and sequence for attention's two products (12 x d x T^2 halved:
    causal kernels skip the masked half). `layers` counts layer applications (L x R when looped)."""
    d, f = hidden, intermediate
    projections = layers * (4 * d * d + 3 * d * f) + d * vocab
    attention = 6 * layers * d * seq**2 * batch
    return 6 * projections * batch * seq + attention
