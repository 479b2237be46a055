"""How fast each board's one inference core does the model's multiply-accumulates: ranges from published
single-thread GEMM figures, not measurements on the boards (``docs/boards.md`` has each source, what it
measured and the arithmetic from it to these ranges).

``musicbox bench macs`` divides a bar's counted MACs (``runtime/macs.py``) by these rates for the lower and
upper estimate of a bar's time on each board; ``--gmacs`` takes a rate measured on a board instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardRate:
    """One board's single-core rate.

    core, ghz: the CPU core and its clock. dotprod: whether it has ARM's int8 dot-product instructions
    (``asimddp``, ``runtime/cpu.py``). s_per_gmac: FP32 seconds per 1e9 MACs on one core (fast, slow).
    int8_gain: how many times faster INT8 MatMuls run than FP32 there (low, high). int8_variant: the
    bundle's INT8 variant to run (``precision = "auto"`` times them on the board and may pick another).
    source: the published figures the FP32 range rests on (``docs/boards.md``).
    """

    core: str
    ghz: float
    dotprod: bool
    s_per_gmac: tuple[float, float]
    int8_gain: tuple[float, float]
    int8_variant: str
    source: str

    def seconds(self, macs: float, int8: bool) -> tuple[float, float]:
        """(lower, upper) estimate of the seconds ``macs`` multiply-accumulates take on one core."""
        fast, slow = (s * macs / 1e9 for s in self.s_per_gmac)
        if not int8:
            return fast, slow
        return fast / self.int8_gain[1], slow / self.int8_gain[0]


NO_DOTPROD_INT8 = (1.0, 1.3)
"""INT8 over FP32 without dot-product instructions: widening 8-bit multiplies do about as many MACs a
cycle as FP32 FMAs (measured on an RK3399's A53/A72: 113.7 ms INT8 vs 110.3 ms FP32, alibaba/MNN#438)."""
DOTPROD_INT8 = (1.5, 3.0)
"""INT8 over FP32 with ``sdot``/``udot``: 16 MACs an instruction against FP32's 4 (4x at most)."""

BOARD_RATES: dict[str, BoardRate] = {
    "Pi Zero 2 W": BoardRate(
        core="Cortex-A53",
        ghz=1.0,
        dotprod=False,
        s_per_gmac=(0.55, 1.3),
        int8_gain=NO_DOTPROD_INT8,
        int8_variant="int8",
        source="OpenBLAS#2643: A53 SGEMM, 1 thread, 4.2-6.5 GFLOPS at 1.42 GHz (RK3399)",
    ),
    "Jetson Nano": BoardRate(
        core="Cortex-A57",
        ghz=1.43,
        dotprod=False,
        s_per_gmac=(0.28, 0.52),
        int8_gain=NO_DOTPROD_INT8,
        int8_variant="int8",
        source="gemmlowp GEMM-kernel sheet: A57 FP32 kernel 12.3 Gop/s at 1.82 GHz (Nexus 5X)",
    ),
    "Pi 4": BoardRate(
        core="Cortex-A72",
        ghz=1.5,
        dotprod=False,
        s_per_gmac=(0.26, 0.43),
        int8_gain=NO_DOTPROD_INT8,
        int8_variant="int8",
        source="OpenBLAS#2230, flame/blis#754: HPL, 1 core, 4.6-5.8 GFLOPS FP64 at 1.5-1.8 GHz",
    ),
    "Jetson Orin Nano": BoardRate(
        core="Cortex-A78AE",
        ghz=1.5,
        dotprod=True,
        s_per_gmac=(0.13, 0.31),
        int8_gain=DOTPROD_INT8,
        int8_variant="int8",
        source="whisper.cpp#89: Orin Nano ggml F32 matmul 25.7-28.8 GFLOPS on 4 threads; A76's MACs a cycle",
    ),
    "Jetson Xavier": BoardRate(
        core="Carmel",
        ghz=2.26,
        dotprod=False,
        s_per_gmac=(0.085, 0.29),
        int8_gain=NO_DOTPROD_INT8,
        int8_variant="int8",
        source="no GEMM figure found: A72's to A76's MACs a cycle (AnandTech 13584: SPEC2006) x 2.26 GHz",
    ),
    "Pi 5": BoardRate(
        core="Cortex-A76",
        ghz=2.4,
        dotprod=True,
        s_per_gmac=(0.08, 0.13),
        int8_gain=DOTPROD_INT8,
        int8_variant="int8",
        source="OpenBLAS#4581: HPL, 1 thread, 15.3-16.1 GFLOPS FP64 at 2.4 GHz (Pi 5)",
    ),
}
"""Board name -> its single-core rate, slowest first (by the slow end of its FP32 range)."""
