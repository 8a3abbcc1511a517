#!/usr/bin/env python3
"""What the GPU's clocks, power and temperature did while a command ran (nvidia-smi samples).

    with ClockSampler() as s:
        subprocess.run(...)
    print(s.summary())   # e.g. "1512 MHz, 688 W, 61 C, power-capped 94%"

Session 20 found BERT bs128 and ViT bs256 benches holding the H100's 700 W cap at ~1.4-1.6 GHz
(nvidia-smi's throttle reason 0x4, "SW power cap") instead of the 1.98 GHz of short bursts, so a
batch's GPU time follows the energy it spends as much as its kernels' isolated times; A/B pairs
run later run hotter. Samples below `busy_watts` (idle gaps, host-side phases) are left out of
the means. Without nvidia-smi every figure is None and summary() says so.
"""
import shutil
import subprocess
import tempfile

POWER_CAP_BIT = 0x4  # clocks_throttle_reasons: SW power cap


class ClockSampler:
    def __init__(self, interval_ms=100, busy_watts=200.0, gpu=0):
        self.interval_ms, self.busy_watts, self.gpu = interval_ms, busy_watts, gpu
        self.samples = []  # (sm MHz, W, C, throttle bits) of the busy samples
        self.peak_idle = None  # (W, C) peaks of all samples, for a run that never got busy
        self._proc = None
        self._out = None

    def __enter__(self):
        smi = shutil.which("nvidia-smi")
        if smi:
            self._out = tempfile.TemporaryFile(mode="w+")
            self._proc = subprocess.Popen(
                [smi, "-i", str(self.gpu), "--query-gpu=clocks.sm,power.draw,temperature.gpu,"
                 "clocks_throttle_reasons.active", "--format=csv,noheader,nounits", f"-lms={self.interval_ms}"],
                stdout=self._out, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        if not self._proc:
            return False
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._out.seek(0)
        parsed = [s for s in (parse(line) for line in self._out) if s]
        self.samples = [s for s in parsed if s[1] >= self.busy_watts]
        self.peak_idle = (max(s[1] for s in parsed), max(s[2] for s in parsed)) if parsed else None
        self._out.close()
        return False

    def mean(self, i):
        return sum(s[i] for s in self.samples) / len(self.samples) if self.samples else None

    def capped_share(self):
        return sum(1 for s in self.samples if s[3] & POWER_CAP_BIT) / len(self.samples) if self.samples else None

    def summary(self):
        if not self.samples:
            if not self._proc:
                return "no nvidia-smi"
            if self.peak_idle:  # a light load (batch 1): never near the cap
                return f"under {self.busy_watts:.0f} W (peak {self.peak_idle[0]:.0f} W, {self.peak_idle[1]:.0f} C)"
            return "no samples"
        return (f"{self.mean(0):.0f} MHz, {self.mean(1):.0f} W, {max(s[2] for s in self.samples):.0f} C, "
                f"power-capped {100 * self.capped_share():.0f}%")


def parse(line):
    """One nvidia-smi CSV line -> (MHz, W, C, throttle bits), or None where a field is not a number."""
    f = [x.strip() for x in line.split(",")]
    if len(f) != 4:
        return None
    try:
        return float(f[0]), float(f[1]), float(f[2]), int(f[3], 16)
    except ValueError:
        return None


if __name__ == "__main__":
    import sys

    with ClockSampler() as s:
        rc = subprocess.run(sys.argv[1:]).returncode if len(sys.argv) > 1 else 0
    print(s.summary())
    sys.exit(rc)
